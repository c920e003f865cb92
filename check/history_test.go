package check

import (
	"slices"
	"strings"
	"testing"
)

func TestReadHistory_AllowedStatus(t *testing.T) {
	place := `{"op":"place_order","outcome":"ack","tenant":"acme","key":"p","order_id":1,"location_id":1}`
	tests := []struct {
		name  string
		lines []string
		want  []string
	}{
		{"placed only", nil, []string{"reserved"}},
		{"fulfil acked", []string{
			`{"op":"fulfil","outcome":"attempt","tenant":"acme","key":"f","order_id":1}`,
			`{"op":"fulfil","outcome":"ack","tenant":"acme","key":"f","order_id":1}`}, []string{"fulfilled"}},
		{"cancel acked", []string{
			`{"op":"cancel","outcome":"attempt","tenant":"acme","key":"c","order_id":1}`,
			`{"op":"cancel","outcome":"ack","tenant":"acme","key":"c","order_id":1}`}, []string{"cancelled"}},
		{"fulfil failed may have applied", []string{
			`{"op":"fulfil","outcome":"attempt","tenant":"acme","key":"f","order_id":1}`,
			`{"op":"fulfil","outcome":"failed","tenant":"acme","key":"f","order_id":1}`}, []string{"reserved", "fulfilled"}},
		{"cancel attempt cut off may have applied", []string{
			`{"op":"cancel","outcome":"attempt","tenant":"acme","key":"c","order_id":1}`}, []string{"reserved", "cancelled"}},
		{"fulfil refused did not apply", []string{
			`{"op":"fulfil","outcome":"attempt","tenant":"acme","key":"f","order_id":1}`,
			`{"op":"fulfil","outcome":"refused","tenant":"acme","key":"f","order_id":1,"error":"invalid_state"}`}, []string{"reserved"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hist, err := readHistory(strings.NewReader(strings.Join(append([]string{place}, tc.lines...), "\n")))
			if err != nil {
				t.Fatalf("readHistory: %v", err)
			}
			if got := hist["acme"].orders[1].allowed(); !slices.Equal(got, tc.want) {
				t.Fatalf("allowed = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestReadHistory_RejectsBadTenant(t *testing.T) {
	_, err := readHistory(strings.NewReader(`{"op":"stock","outcome":"ack","tenant":"Robert'); DROP TABLE orders;--"}`))
	if err == nil {
		t.Fatal("readHistory accepted an invalid tenant id")
	}
}
