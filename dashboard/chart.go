package dashboard

import (
	"fmt"
	"strings"
)

// chart is a small line chart drawn on the server as inline SVG (no
// script, no charting library): one value per point, x evenly spaced.
type chart struct {
	Title         string
	Width, Height int
	Series        []series
	// Limit is a dashed threshold line (LimitY in SVG units), when set.
	Limit      string
	LimitY     float64
	Top, Floor string // the y axis' labels
}

type series struct {
	Name, Class string
	Points      string // SVG polyline points
	Last        string // the last value, labelled
}

const chartPad = 6

// newChart scales the series (each a value per point) to one y range, from
// 0 to the largest value or limit (or unit when everything is 0).
func newChart(title string, unit float64, format func(float64) string, limit float64, named ...namedValues) *chart {
	c := &chart{Title: title, Width: 360, Height: 120, Floor: format(0)}
	top := max(unit, limit)
	for _, s := range named {
		for _, v := range s.Values {
			top = max(top, v)
		}
	}
	y := func(v float64) float64 { return float64(c.Height-chartPad) - v/top*float64(c.Height-2*chartPad) }
	for _, s := range named {
		var pts []string
		for i, v := range s.Values {
			x := float64(chartPad)
			if len(s.Values) > 1 {
				x += float64(i) * float64(c.Width-2*chartPad) / float64(len(s.Values)-1)
			}
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x, y(v)))
		}
		last := ""
		if n := len(s.Values); n > 0 {
			last = format(s.Values[n-1])
		}
		c.Series = append(c.Series, series{Name: s.Name, Class: s.Class, Points: strings.Join(pts, " "), Last: last})
	}
	if limit > 0 {
		c.Limit, c.LimitY = format(limit), y(limit)
	}
	c.Top = format(top)
	return c
}

type namedValues struct {
	Name, Class string
	Values      []float64
}
