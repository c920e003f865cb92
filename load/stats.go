package load

import (
	"encoding/json"
	"math/bits"
	"sort"
	"sync"
	"time"
)

// Millis is a duration that JSON-encodes as fractional milliseconds.
type Millis time.Duration

// MarshalJSON encodes m as milliseconds.
func (m Millis) MarshalJSON() ([]byte, error) {
	return json.Marshal(float64(m) / float64(time.Millisecond))
}

// UnmarshalJSON decodes milliseconds.
func (m *Millis) UnmarshalJSON(b []byte) error {
	var ms float64
	if err := json.Unmarshal(b, &ms); err != nil {
		return err
	}
	*m = Millis(ms * float64(time.Millisecond))
	return nil
}

func (m Millis) String() string { return time.Duration(m).String() }

// Latency summarises client-perceived latency of logical requests
// (including their retries). Percentiles come from a log-linear histogram
// with about 3% relative error; Max is exact.
type Latency struct {
	P50 Millis `json:"p50_ms"`
	P90 Millis `json:"p90_ms"`
	P99 Millis `json:"p99_ms"`
	Max Millis `json:"max_ms"`
}

// Stats is the state of a run so far; Run passes it to onProgress about
// once a second and returns the final one in its Summary.
type Stats struct {
	Elapsed Millis `json:"elapsed_ms"`
	// Requests counts finished logical requests (each with its retries).
	Requests int64 `json:"requests"`
	// Acknowledged counts requests answered as expected: 2xx, or a definite
	// refusal such as 409 insufficient_stock (also counted in Refused).
	Acknowledged int64 `json:"acknowledged"`
	Refused      int64 `json:"refused"`
	// Retries counts extra attempts; Replays answers marked Idempotent-Replayed.
	Retries int64 `json:"retries"`
	Replays int64 `json:"replays"`
	// Failures counts requests that finally did not succeed, by code.
	Failures       int64            `json:"failures"`
	FailuresByCode map[string]int64 `json:"failures_by_code"`
	// Interrupted counts requests cut off by cancellation of the run's
	// context; they are neither acknowledged nor failures.
	Interrupted int64 `json:"interrupted"`
	// AckedByOp counts acknowledged operations by kind.
	AckedByOp map[string]int64 `json:"acked_by_op"`
	// Throughput is finished requests per second of Elapsed.
	Throughput float64 `json:"throughput"`
	Latency    Latency `json:"latency"`
	// LongestStall is the longest time with no acknowledged request,
	// counted from the start of the run to its end.
	LongestStall   Millis `json:"longest_stall_ms"`
	LongestStallAt Millis `json:"longest_stall_at_ms"`
}

// Histogram records latencies in log-linear buckets: values below 64 µs
// have their own bucket, above that each power of two is split into 32, so
// a quantile is within about 3% of the true value; Max is exact. The zero
// value is empty and ready to use; it is not safe for concurrent use (give
// each worker its own and Merge them).
type Histogram struct {
	counts [2048]int64
	total  int64
	max    int64
}

func bucketOf(us int64) int {
	if us < 64 {
		return int(max(us, 0))
	}
	e := bits.Len64(uint64(us)) - 6
	return e*32 + int(us>>e)
}

// bucketHigh is the largest value of bucket i.
func bucketHigh(i int) int64 {
	if i < 64 {
		return int64(i)
	}
	e := i/32 - 1
	m := int64(i - 32*e)
	return (m+1)<<e - 1
}

// Record adds one latency.
func (h *Histogram) Record(d time.Duration) {
	us := d.Microseconds()
	h.counts[min(bucketOf(us), len(h.counts)-1)]++
	h.total++
	h.max = max(h.max, us)
}

// Merge adds every latency recorded in o.
func (h *Histogram) Merge(o *Histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.total += o.total
	h.max = max(h.max, o.max)
}

// Count is the number of latencies recorded.
func (h *Histogram) Count() int64 { return h.total }

// Quantile returns the q-quantile (0 <= q <= 1) of the recorded latencies,
// 0 when there are none.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.total == 0 {
		return 0
	}
	rank := int64(q*float64(h.total-1)) + 1
	var seen int64
	for i, c := range h.counts {
		if seen += c; seen >= rank {
			return time.Duration(min(bucketHigh(i), h.max)) * time.Microsecond
		}
	}
	return time.Duration(h.max) * time.Microsecond
}

// Latency summarises the histogram.
func (h *Histogram) Latency() Latency {
	return Latency{
		P50: Millis(h.Quantile(0.50)),
		P90: Millis(h.Quantile(0.90)),
		P99: Millis(h.Quantile(0.99)),
		Max: Millis(time.Duration(h.max) * time.Microsecond),
	}
}

// recorder accumulates stats; it is safe for concurrent use.
type recorder struct {
	mu     sync.Mutex
	start  time.Time
	lastOK time.Time
	s      Stats
	hist   Histogram
}

func newRecorder(start time.Time) *recorder {
	return &recorder{start: start, lastOK: start, s: Stats{FailuresByCode: map[string]int64{}, AckedByOp: map[string]int64{}}}
}

func (r *recorder) retry() {
	r.mu.Lock()
	r.s.Retries++
	r.mu.Unlock()
}

// ok records an acknowledged request that finished at now.
func (r *recorder) ok(op string, lat time.Duration, refused, replayed bool, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.s.Requests++
	r.s.Acknowledged++
	if refused {
		r.s.Refused++
	}
	if replayed {
		r.s.Replays++
	}
	r.s.AckedByOp[op]++
	r.hist.Record(lat)
	r.noteGap(now)
	r.lastOK = now
}

// failed records a request that finally did not succeed.
func (r *recorder) failed(code string, lat time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.s.Requests++
	r.s.Failures++
	r.s.FailuresByCode[code]++
	r.hist.Record(lat)
}

func (r *recorder) interrupted() {
	r.mu.Lock()
	r.s.Interrupted++
	r.mu.Unlock()
}

func (r *recorder) noteGap(now time.Time) {
	if gap := now.Sub(r.lastOK); Millis(gap) > r.s.LongestStall {
		r.s.LongestStall = Millis(gap)
		r.s.LongestStallAt = Millis(r.lastOK.Sub(r.start))
	}
}

// snapshot returns a copy of the stats as of now.
func (r *recorder) snapshot(now time.Time) Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.noteGap(now)
	s := r.s
	s.FailuresByCode = cloneMap(r.s.FailuresByCode)
	s.AckedByOp = cloneMap(r.s.AckedByOp)
	el := now.Sub(r.start)
	s.Elapsed = Millis(el)
	if el > 0 {
		s.Throughput = float64(s.Requests) / el.Seconds()
	}
	s.Latency = r.hist.Latency()
	return s
}

func cloneMap(m map[string]int64) map[string]int64 {
	c := make(map[string]int64, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// SortedCodes returns the failure codes of s, most frequent first.
func (s Stats) SortedCodes() []string {
	codes := make([]string, 0, len(s.FailuresByCode))
	for c := range s.FailuresByCode {
		codes = append(codes, c)
	}
	sort.Slice(codes, func(i, j int) bool {
		a, b := s.FailuresByCode[codes[i]], s.FailuresByCode[codes[j]]
		return a > b || a == b && codes[i] < codes[j]
	})
	return codes
}
