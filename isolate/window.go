package isolate

import (
	"context"
	"fmt"
	"time"

	"tenantry/registry"
)

// WindowAuto asks for the tenant's quietest hour (Request.Window).
const WindowAuto = "auto"

// AutoDays is how many recent days of the tenant's traffic `--window auto`
// reads; AutoMinHours is the least history (hours back to its oldest
// figure) it decides on.
const (
	AutoDays     = 7
	AutoMinHours = 24
)

// ErrNoHistory: the tenant's traffic history is too short for --window auto.
var ErrNoHistory = fmt.Errorf("%w: not enough traffic history", registry.ErrInvalid)

// QuietestHour picks the hour of the day (UTC) with the fewest requests
// in history (hourly figures of the last AutoDays days before now; hours
// without a figure count as none) and explains the choice with its
// figures. Ties go to the earliest hour. It needs history reaching at least
// AutoMinHours back.
func QuietestHour(history []registry.HourTraffic, now time.Time) (Window, string, error) {
	since := now.Add(-AutoDays * 24 * time.Hour)
	var byHour [24]int64
	oldest := now
	var total int64
	for _, h := range history {
		if h.Hour.Before(since) || h.Hour.After(now) {
			continue
		}
		byHour[h.Hour.UTC().Hour()] += h.Requests
		total += h.Requests
		if h.Hour.Before(oldest) {
			oldest = h.Hour
		}
	}
	if now.Sub(oldest) < AutoMinHours*time.Hour {
		return Window{}, "", fmt.Errorf("%w: the gateways recorded %s of this tenant's traffic, --window auto needs %d hours; give --window HH:MM-HH:MM",
			ErrNoHistory, now.Sub(oldest).Round(time.Hour), AutoMinHours)
	}
	quiet, busy := 0, 0
	for h := range byHour {
		if byHour[h] < byHour[quiet] {
			quiet = h
		}
		if byHour[h] > byHour[busy] {
			busy = h
		}
	}
	days := now.Sub(oldest).Hours() / 24
	w := Window{Start: time.Duration(quiet) * time.Hour, End: time.Duration((quiet+1)%24) * time.Hour}
	why := fmt.Sprintf("quietest hour %s UTC: %d requests over %.1f days (%.0f a day); busiest %02d:00 with %d; %d requests in all",
		w, byHour[quiet], days, float64(byHour[quiet])/max(days, 1), busy, byHour[busy], total)
	return w, why, nil
}

// resolveWindow replaces WindowAuto in req with the tenant's quietest hour
// and returns why it was picked ("" for an explicit window).
func (s *Service) resolveWindow(ctx context.Context, req *Request) (string, error) {
	if req.Window != WindowAuto {
		return "", nil
	}
	now := s.cfg.Now()
	history, err := s.cfg.Store.TenantTraffic(ctx, req.Tenant, now.Add(-AutoDays*24*time.Hour))
	if err != nil {
		return "", err
	}
	w, why, err := QuietestHour(history, now)
	if err != nil {
		return "", err
	}
	req.Window = w.String()
	return why, nil
}
