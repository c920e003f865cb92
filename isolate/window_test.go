package isolate

import (
	"errors"
	"strings"
	"testing"
	"time"

	"tenantry/registry"
)

// history is days of hourly figures before now: a daily curve busy in the
// afternoon, with hour quiet the quietest.
func history(now time.Time, days, quiet int) []registry.HourTraffic {
	var out []registry.HourTraffic
	start := now.Truncate(time.Hour).Add(-time.Duration(days*24) * time.Hour)
	for h := start; h.Before(now); h = h.Add(time.Hour) {
		hour := h.Hour()
		n := int64(100 + 40*(12-abs(hour-14)))
		if hour == quiet {
			n = 7
		}
		out = append(out, registry.HourTraffic{Hour: h, Requests: n})
	}
	return out
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

func TestQuietestHour(t *testing.T) {
	now := time.Date(2026, 11, 30, 10, 17, 0, 0, time.UTC)
	for _, quiet := range []int{0, 3, 23} {
		w, why, err := QuietestHour(history(now, 7, quiet), now)
		if err != nil {
			t.Fatal(err)
		}
		if w.Start != time.Duration(quiet)*time.Hour || w.End != time.Duration((quiet+1)%24)*time.Hour {
			t.Errorf("quiet hour %d: picked %s", quiet, w)
		}
		if !strings.Contains(why, w.String()) || !strings.Contains(why, "busiest 14:00") {
			t.Errorf("explanation %q", why)
		}
		if !w.Contains(now.Truncate(24 * time.Hour).Add(time.Duration(quiet)*time.Hour + 30*time.Minute)) {
			t.Errorf("window %s does not contain its own hour", w)
		}
	}
	// Hours with no figure at all count as none: the quietest.
	h := history(now, 3, 5)
	var gap []registry.HourTraffic
	for _, x := range h {
		if x.Hour.Hour() != 4 {
			gap = append(gap, x)
		}
	}
	if w, _, _ := QuietestHour(gap, now); w.Start != 4*time.Hour {
		t.Errorf("an hour without requests: picked %s", w)
	}
	// Less than a day of history decides nothing.
	if _, _, err := QuietestHour(history(now, 0, 3)[:0], now); !errors.Is(err, ErrNoHistory) || !errors.Is(err, registry.ErrInvalid) {
		t.Errorf("no history: %v", err)
	}
	short := history(now, 1, 3)[12:]
	if _, _, err := QuietestHour(short, now); !errors.Is(err, ErrNoHistory) {
		t.Errorf("12 hours of history: %v", err)
	}
	// Figures older than AutoDays do not count.
	old := history(now.Add(-8*24*time.Hour), 7, 9)
	if _, _, err := QuietestHour(old, now); !errors.Is(err, ErrNoHistory) {
		t.Errorf("only old history: %v", err)
	}
}

func TestWindow(t *testing.T) {
	w, err := ParseWindow("22:30-02:00")
	if err != nil {
		t.Fatal(err)
	}
	day := time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)
	for at, want := range map[time.Duration]bool{23 * time.Hour: true, time.Hour: true, 2 * time.Hour: false, 22 * time.Hour: false} {
		if got := w.Contains(day.Add(at)); got != want {
			t.Errorf("%s contains %v: %v", w, at, got)
		}
	}
	if next := w.Next(day.Add(12 * time.Hour)); !next.Equal(day.Add(22*time.Hour + 30*time.Minute)) {
		t.Errorf("next opening %v", next)
	}
	for _, bad := range []string{"25:00-01:00", "1:00-2:00", "01:00", "01:00-01:00", "auto"} {
		if _, err := ParseWindow(bad); err == nil {
			t.Errorf("window %q accepted", bad)
		}
	}
}
