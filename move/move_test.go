package move

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

func TestWindow_Contains(t *testing.T) {
	at := func(h, m int) time.Time { return time.Date(2026, 1, 2, h, m, 0, 0, time.UTC) }
	day := Window{Start: 2 * time.Hour, End: 4 * time.Hour}
	night := Window{Start: 22 * time.Hour, End: 2 * time.Hour} // wraps past midnight
	tests := []struct {
		name string
		w    Window
		t    time.Time
		want bool
	}{
		{"before", day, at(1, 59), false},
		{"at start", day, at(2, 0), true},
		{"inside", day, at(3, 30), true},
		{"at end", day, at(4, 0), false},
		{"wrapping, before midnight", night, at(23, 0), true},
		{"wrapping, after midnight", night, at(1, 59), true},
		{"wrapping, at end", night, at(2, 0), false},
		{"wrapping, midday", night, at(12, 0), false},
		{"other zone", day, at(3, 0).In(time.FixedZone("x", 5*3600)), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.w.Contains(tc.t); got != tc.want {
				t.Errorf("%+v.Contains(%s) = %v, want %v", tc.w, tc.t, got, tc.want)
			}
		})
	}
}

// TestFlipError: a refused or rolled-back flip is recorded as text on the
// move; the error rebuilt from it must wrap the same sentinel.
func TestFlipError(t *testing.T) {
	for _, sentinel := range []error{ErrPrecheck, ErrAborted} {
		recorded := fmt.Errorf("%w: replication lag 99 bytes", sentinel).Error()
		err := flipError(SignalPromote, recorded)
		if !errors.Is(err, sentinel) || err.Error() != "promote: "+recorded {
			t.Errorf("flipError(%q) = %v, want it to wrap %v", recorded, err, sentinel)
		}
	}
	if err := flipError(SignalCutback, "connection refused"); errors.Is(err, ErrPrecheck) || errors.Is(err, ErrAborted) {
		t.Errorf("flipError of another failure = %v, wraps a flip sentinel", err)
	}
}

// TestLinkFor: the link leaving the move's source uses the forward names,
// the other direction the reverse names, whichever side a flip starts from.
func TestLinkFor(t *testing.T) {
	d := &Data{Source: "a", Target: "b"}
	fwd, err := linkFor("m1", d, "a", "b")
	if err != nil {
		t.Fatal(err)
	}
	back, err := linkFor("m1", d, "b", "a")
	if err != nil {
		t.Fatal(err)
	}
	if fwd.Publication != "tenantry_mv_m1" || fwd.From != "a" || back.Subscription != "tenantry_mv_m1_rev" || back.To != "a" {
		t.Errorf("links %+v %+v", fwd, back)
	}
	if _, err := linkFor("Bad-ID", d, "a", "b"); err == nil {
		t.Error("linkFor accepted an invalid move id")
	}
}
