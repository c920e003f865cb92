package gateway

import (
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics of the gateway, namespace tenantry_gateway_.
//
// Cardinality: requests and latency carry stack and tenant labels, so series
// grow with tenants × stacks × status codes. That is intended at this
// platform's scale (hundreds of tenants, a few stacks each: rollout analysis
// compares stacks per tenant). A deployment with many thousands of tenants
// should drop the tenant label here and keep per-tenant figures in logs.
type metrics struct {
	requests *prometheus.CounterVec   // stack, tenant, code
	errors   *prometheus.CounterVec   // stack, tenant: responses with status >= 500
	latency  *prometheus.HistogramVec // stack, tenant
	retries  *prometheus.CounterVec   // stack: attempts moved to another instance
	downs    *prometheus.CounterVec   // stack: instances taken out of rotation

	// series caches the series of each stack, tenant and status code that
	// has been observed (series are never deleted): looking them up by
	// label values hashes and compares every label on every request.
	series sync.Map // seriesKey -> *requestSeries
}

type seriesKey struct {
	stack, tenant string
	code          int
}

// requestSeries are the series one request's outcome goes to; errors and
// latency are nil when the outcome does not count there.
type requestSeries struct {
	requests prometheus.Counter
	errors   prometheus.Counter
	latency  prometheus.Observer
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	const ns = "tenantry_gateway"
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "requests_total",
			Help: "Requests by stack, tenant and status code (stack is empty when none was chosen).",
		}, []string{"stack", "tenant", "code"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "responses_5xx_total",
			Help: "Responses with a 5xx status by stack and tenant.",
		}, []string{"stack", "tenant"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: ns, Name: "request_duration_seconds",
			Help:    "Request latency at the gateway, from first byte read to response copied, by stack and tenant.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 15),
		}, []string{"stack", "tenant"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "retries_total",
			Help: "Requests moved to another instance because the first could not be connected to.",
		}, []string{"stack"}),
		downs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "instance_unhealthy_total",
			Help: "Times passive health took an instance out of rotation.",
		}, []string{"stack"}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.errors, m.latency, m.retries, m.downs} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// codeLabels holds the label text of every status code so that recording a
// request does not format an integer.
var codeLabels = func() (l [600]string) {
	for i := range l {
		l[i] = strconv.Itoa(i)
	}
	return l
}()

func codeLabel(code int) string {
	if code >= 0 && code < len(codeLabels) {
		return codeLabels[code]
	}
	return strconv.Itoa(code)
}

func (m *metrics) observe(stack, tenant string, code int, d time.Duration) {
	k := seriesKey{stack, tenant, code}
	v, ok := m.series.Load(k)
	if !ok {
		rs := &requestSeries{requests: m.requests.WithLabelValues(stack, tenant, codeLabel(code))}
		if code >= 500 {
			rs.errors = m.errors.WithLabelValues(stack, tenant)
		}
		if stack != "" {
			rs.latency = m.latency.WithLabelValues(stack, tenant)
		}
		v, _ = m.series.LoadOrStore(k, rs)
	}
	rs := v.(*requestSeries)
	rs.requests.Inc()
	if rs.errors != nil {
		rs.errors.Inc()
	}
	if rs.latency != nil {
		rs.latency.Observe(d.Seconds())
	}
}
