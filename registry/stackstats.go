package registry

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5"
)

// Per-stack request outcomes, as every gateway publishes them (issue 13):
// each gateway writes, four times a second, one row per stack it served
// with the requests, the 5xx answers and a latency histogram of that
// period; readers (the rollout analysis) sum the rows of every gateway over
// a window. The rows are not routing configuration: no version bump.

// LatencyBuckets is the number of buckets of a StackStats histogram.
// Bucket i counts requests that took at most BucketUpper(i); the last one
// also counts every longer request.
const LatencyBuckets = 64

// bucketBase is the upper bound of bucket 0; bounds grow by 2^(1/4), so
// that a quantile read from the histogram is within 19 % of the truth.
const bucketBase = 250 * time.Microsecond

// BucketUpper is the upper bound of bucket i.
func BucketUpper(i int) time.Duration {
	return time.Duration(float64(bucketBase) * math.Pow(2, float64(i)/4))
}

// LatencyBucket is the bucket a request of duration d counts in.
func LatencyBucket(d time.Duration) int {
	if d <= bucketBase {
		return 0
	}
	i := int(math.Ceil(4 * math.Log2(float64(d)/float64(bucketBase))))
	// Rounding may put d one bucket low; never below its bound.
	for i < LatencyBuckets-1 && BucketUpper(i) < d {
		i++
	}
	return min(i, LatencyBuckets-1)
}

// StackStats are the request outcomes of one stack over a period.
type StackStats struct {
	Requests int64 `json:"requests"`
	// Errors counts answers with a 5xx status.
	Errors int64 `json:"errors_5xx"`
	// Buckets is the latency histogram (LatencyBuckets long, or empty when
	// there were no requests).
	Buckets []int64 `json:"buckets,omitempty"`
}

// Add returns the sum of s and o.
func (s StackStats) Add(o StackStats) StackStats {
	out := StackStats{Requests: s.Requests + o.Requests, Errors: s.Errors + o.Errors}
	if len(s.Buckets) > 0 || len(o.Buckets) > 0 {
		out.Buckets = make([]int64, LatencyBuckets)
		for i := range out.Buckets {
			if i < len(s.Buckets) {
				out.Buckets[i] += s.Buckets[i]
			}
			if i < len(o.Buckets) {
				out.Buckets[i] += o.Buckets[i]
			}
		}
	}
	return out
}

// ErrorRate is Errors/Requests; 0 without requests.
func (s StackStats) ErrorRate() float64 {
	if s.Requests == 0 {
		return 0
	}
	return float64(s.Errors) / float64(s.Requests)
}

// Quantile is the q-quantile (0 < q <= 1) of the latency histogram,
// interpolated linearly within its bucket; 0 without requests.
func (s StackStats) Quantile(q float64) time.Duration {
	var total int64
	for _, n := range s.Buckets {
		total += n
	}
	if total == 0 {
		return 0
	}
	rank := q * float64(total)
	var seen int64
	for i, n := range s.Buckets {
		if n == 0 || float64(seen+n) < rank {
			seen += n
			continue
		}
		lo := time.Duration(0)
		if i > 0 {
			lo = BucketUpper(i - 1)
		}
		frac := (rank - float64(seen)) / float64(n)
		return lo + time.Duration(frac*float64(BucketUpper(i)-lo))
	}
	return BucketUpper(LatencyBuckets - 1)
}

// StackStatsRetention is how long stack_stats rows are kept; each gateway
// prunes its own older rows when it writes.
const StackStatsRetention = time.Hour

// WriteStackStats records one period of gateway's outcomes per stack, and
// prunes that gateway's rows older than StackStatsRetention. A gateway
// writes only rows of its own id.
func (s *Store) WriteStackStats(ctx context.Context, gateway string, stats map[string]StackStats) error {
	if err := ValidateName("gateway", gateway); err != nil {
		return err
	}
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		for stack, st := range stats {
			if _, err := tx.Exec(ctx, `INSERT INTO stack_stats (gateway, stack, requests, errors, buckets)
				VALUES ($1, $2, $3, $4, COALESCE($5::bigint[], '{}'))`, gateway, stack, st.Requests, st.Errors, st.Buckets); err != nil {
				return dbErr("write stack stats of gateway "+gateway, err)
			}
		}
		_, err := tx.Exec(ctx, "DELETE FROM stack_stats WHERE gateway = $1 AND at < now() - $2::interval", gateway, StackStatsRetention)
		return dbErr("prune stack stats of gateway "+gateway, err)
	})
}

// StackStats sums, per stack of stacks, the rows of every gateway recorded
// after after and up to now (the control database's clock), and returns
// that now: the next window starts there, so that consecutive windows count
// every row once. Stacks without rows are absent from the map.
func (s *Store) StackStats(ctx context.Context, stacks []string, after time.Time) (map[string]StackStats, time.Time, error) {
	var upto time.Time
	if err := s.pool.QueryRow(ctx, "SELECT clock_timestamp()").Scan(&upto); err != nil {
		return nil, upto, dbErr("read stack stats", err)
	}
	rows, err := s.pool.Query(ctx, `SELECT stack, requests, errors, buckets FROM stack_stats
		WHERE stack = ANY($1) AND at > $2 AND at <= $3`, stacks, after, upto)
	if err != nil {
		return nil, upto, dbErr("read stack stats", err)
	}
	out := map[string]StackStats{}
	var stack string
	var st StackStats
	_, err = pgx.ForEachRow(rows, []any{&stack, &st.Requests, &st.Errors, &st.Buckets}, func() error {
		out[stack] = out[stack].Add(st)
		return nil
	})
	if err != nil {
		return nil, upto, fmt.Errorf("read stack stats: %w", err)
	}
	return out, upto, nil
}
