package dashboard

import (
	"fmt"
	"testing"
)

func TestNewChart(t *testing.T) {
	pct := func(f float64) string { return fmt.Sprintf("%.0f%%", f) }
	for _, tc := range []struct {
		name        string
		unit        float64
		limit       float64
		values      []float64
		points      string
		top, limitY string
	}{
		{"scaled to the largest value", 1, 0, []float64{0, 50, 100}, "6.0,114.0 180.0,60.0 354.0,6.0", "100%", ""},
		{"all zero: scaled to the unit", 10, 0, []float64{0, 0}, "6.0,114.0 354.0,114.0", "10%", ""},
		{"limit above the values sets the top", 1, 4, []float64{1, 2}, "6.0,87.0 354.0,60.0", "4%", "6.0"},
		{"one point", 1, 0, []float64{2}, "6.0,6.0", "2%", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newChart("x", tc.unit, pct, tc.limit, namedValues{"s", "new", tc.values})
			if c.Series[0].Points != tc.points || c.Top != tc.top {
				t.Fatalf("points %q top %q, want %q %q", c.Series[0].Points, c.Top, tc.points, tc.top)
			}
			if got := fmt.Sprintf("%.1f", c.LimitY); tc.limitY != "" && got != tc.limitY {
				t.Fatalf("limit at y %s, want %s", got, tc.limitY)
			}
		})
	}
}
