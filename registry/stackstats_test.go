package registry_test

import (
	"context"
	"testing"
	"time"

	"tenantry/registry"
)

func TestLatencyBucket(t *testing.T) {
	for _, d := range []time.Duration{0, time.Microsecond, 250 * time.Microsecond, time.Millisecond, 7 * time.Millisecond, 200 * time.Millisecond, 3 * time.Second} {
		i := registry.LatencyBucket(d)
		if registry.BucketUpper(i) < d || (i > 0 && registry.BucketUpper(i-1) >= d) {
			t.Errorf("%v in bucket %d (%v, %v]", d, i, registry.BucketUpper(i-1), registry.BucketUpper(i))
		}
	}
	if i := registry.LatencyBucket(time.Hour); i != registry.LatencyBuckets-1 {
		t.Errorf("an hour in bucket %d, want the last", i)
	}
}

func TestStackStats_Quantile(t *testing.T) {
	var s registry.StackStats
	if s.Quantile(0.99) != 0 || s.ErrorRate() != 0 {
		t.Fatal("empty stats have figures")
	}
	add := func(d time.Duration, n int64) {
		b := make([]int64, registry.LatencyBuckets)
		b[registry.LatencyBucket(d)] = n
		s = s.Add(registry.StackStats{Requests: n, Buckets: b})
	}
	add(5*time.Millisecond, 980)
	add(200*time.Millisecond, 20)
	p50, p99 := s.Quantile(0.5), s.Quantile(0.99)
	if p50 < 4*time.Millisecond || p50 > 6*time.Millisecond {
		t.Errorf("p50 %v, want about 5ms", p50)
	}
	if p99 < 160*time.Millisecond || p99 > 240*time.Millisecond {
		t.Errorf("p99 %v, want about 200ms", p99)
	}
}

func TestStore_StackStats(t *testing.T) {
	s, _ := mustStore(t)
	ctx := context.Background()
	b := func(d time.Duration, n int64) []int64 {
		out := make([]int64, registry.LatencyBuckets)
		out[registry.LatencyBucket(d)] = n
		return out
	}
	_, start, err := s.StackStats(ctx, []string{"blue"}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	must(t, s.WriteStackStats(ctx, "gw-1", map[string]registry.StackStats{
		"blue":  {Requests: 10, Errors: 1, Buckets: b(time.Millisecond, 10)},
		"green": {Requests: 4, Buckets: b(time.Millisecond, 4)},
	}))
	must(t, s.WriteStackStats(ctx, "gw-2", map[string]registry.StackStats{"blue": {Requests: 5, Errors: 2, Buckets: b(time.Millisecond, 5)}}))
	got, upto, err := s.StackStats(ctx, []string{"blue", "red"}, start)
	if err != nil {
		t.Fatal(err)
	}
	if blue := got["blue"]; blue.Requests != 15 || blue.Errors != 3 || blue.Buckets[registry.LatencyBucket(time.Millisecond)] != 15 {
		t.Errorf("blue across gateways: %+v", blue)
	}
	if _, ok := got["green"]; ok {
		t.Error("a stack not asked for was returned")
	}
	if _, ok := got["red"]; ok {
		t.Error("a stack without rows was returned")
	}
	next, _, err := s.StackStats(ctx, []string{"blue"}, upto)
	if err != nil || len(next) != 0 {
		t.Errorf("the next window counts rows again: %v, %v", next, err)
	}
	if err := s.WriteStackStats(ctx, "Bad Name", nil); err == nil {
		t.Error("a malformed gateway id was accepted")
	}
}
