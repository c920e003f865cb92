package route

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

const metricsNamespace = "tenantry_router"

// metrics are the router's Prometheus metrics. They exist whether or not a
// Registerer was given, so the hot path never checks.
type metrics struct {
	transactions *prometheus.CounterVec
	untracked    *prometheus.CounterVec
	errors       *prometheus.CounterVec
	buffered     prometheus.GaugeFunc
	bufferWait   prometheus.Histogram
	swapSeconds  prometheus.Histogram
	reruns       prometheus.Counter
	pools        *poolCollector
}

func newMetrics(r *Router) *metrics {
	return &metrics{
		transactions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "transactions_total",
			Help: "Transactions by tenant and result (ok, error, paused, fenced, not_found).",
		}, []string{"tenant", "result"}),
		untracked: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "rejected_total",
			Help: "Transactions refused before a tenant was known (unknown or malformed tenant, no snapshot, stopped), by result.",
		}, []string{"result"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "errors_total",
			Help: "Router errors outside transactions by kind (heartbeat, ack, connection_slot, refresh).",
		}, []string{"kind"}),
		buffered: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: metricsNamespace, Name: "buffered",
			Help: "Transactions waiting at paused tenants' gates.",
		}, func() float64 { return float64(r.buffered.Load()) }),
		bufferWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: metricsNamespace, Name: "buffer_wait_seconds",
			Help:    "How long transactions waited at a paused tenant's gate.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}),
		swapSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: metricsNamespace, Name: "snapshot_apply_seconds",
			Help:    "How long applying a new registry snapshot to every tenant took.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
		}),
		reruns: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "reruns_total",
			Help: "Transactions admitted again because the placement they were admitted to refused or ended their session after a pause or a flip (read-only ones, and ones that never started).",
		}),
		pools: &poolCollector{r: r},
	}
}

func (m *metrics) register(reg prometheus.Registerer) error {
	var errs []error
	for _, c := range []prometheus.Collector{m.transactions, m.untracked, m.errors, m.buffered, m.bufferWait, m.swapSeconds, m.reruns, m.pools} {
		errs = append(errs, reg.Register(c))
	}
	return errors.Join(errs...)
}

var (
	poolConnsDesc = prometheus.NewDesc(metricsNamespace+"_pool_connections",
		"Connections of a tenant's current pool by state (open, idle, acquired).", []string{"tenant", "state"}, nil)
	clusterConnsDesc = prometheus.NewDesc(metricsNamespace+"_cluster_connections",
		"Connections this router holds to a cluster member (host:port).", []string{"server"}, nil)
	clusterCapDesc = prometheus.NewDesc(metricsNamespace+"_cluster_connections_cap",
		"The most connections this router opens to a cluster member.", []string{"server"}, nil)
)

// poolCollector reports pool and cluster connection counts at scrape time.
type poolCollector struct{ r *Router }

func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- poolConnsDesc
	ch <- clusterConnsDesc
	ch <- clusterCapDesc
}

func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	c.r.tenants.Range(func(_, v any) bool {
		st := v.(*tenantState)
		st.mu.Lock()
		p := st.pool
		st.mu.Unlock()
		if p == nil {
			return true
		}
		s := p.pool.Stat()
		ch <- prometheus.MustNewConstMetric(poolConnsDesc, prometheus.GaugeValue, float64(s.TotalConns()), st.id, "open")
		ch <- prometheus.MustNewConstMetric(poolConnsDesc, prometheus.GaugeValue, float64(s.IdleConns()), st.id, "idle")
		ch <- prometheus.MustNewConstMetric(poolConnsDesc, prometheus.GaugeValue, float64(s.AcquiredConns()), st.id, "acquired")
		return true
	})
	c.r.clMu.Lock()
	defer c.r.clMu.Unlock()
	for key, cl := range c.r.clusters {
		ch <- prometheus.MustNewConstMetric(clusterConnsDesc, prometheus.GaugeValue, float64(cl.open()), key)
		ch <- prometheus.MustNewConstMetric(clusterCapDesc, prometheus.GaugeValue, float64(cl.cap), key)
	}
}
