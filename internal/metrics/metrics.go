// Package metrics exposes attlsd's counters in the Prometheus format: it
// observes the proxy's handshakes, counts reloads, and reads the per-rule
// counts, the policy generation and certificate expiry from the server
// at each scrape.
package metrics

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/attlsd/attlsd/policy"
	"github.com/attlsd/attlsd/proxy"
)

// Metrics holds attlsd's collectors in a registry of its own.
type Metrics struct {
	reg *prometheus.Registry
	srv *proxy.Server

	failed    *prometheus.CounterVec
	handshake *prometheus.HistogramVec
	reloads   *prometheus.CounterVec
}

// New registers attlsd's metrics for srv, and the Go and process
// collectors, and sets itself as srv's observer. Call it before
// srv.Start.
func New(srv *proxy.Server) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		srv: srv,
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "attlsd_handshake_failures_total",
			Help: "Failed TLS handshakes, and failed connects before outbound ones, by reason.",
		}, []string{"direction", "reason"}),
		handshake: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "attlsd_handshake_duration_seconds",
			Help:    "Time taken by successful TLS handshakes.",
			Buckets: []float64{.0005, .001, .002, .005, .01, .02, .05, .1, .2, .5, 1, 2, 5},
		}, []string{"direction"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "attlsd_reloads_total",
			Help: "Policy reloads by result: applied or rejected.",
		}, []string{"result"}),
	}
	for _, r := range []string{"applied", "rejected"} {
		m.reloads.WithLabelValues(r)
	}
	m.reg.MustRegister(m.failed, m.handshake, m.reloads, &live{srv},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	srv.Observe(m)
	return m
}

// Handler serves the metrics.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// Reloaded counts a reload, applied or rejected.
func (m *Metrics) Reloaded(applied bool) {
	if applied {
		m.reloads.WithLabelValues("applied").Inc()
	} else {
		m.reloads.WithLabelValues("rejected").Inc()
	}
}

// Handshake implements proxy.Observer.
func (m *Metrics) Handshake(dir policy.Direction, d time.Duration) {
	m.handshake.WithLabelValues(dir.String()).Observe(d.Seconds())
}

// HandshakeFailed implements proxy.Observer.
func (m *Metrics) HandshakeFailed(dir policy.Direction, reason string) {
	m.failed.WithLabelValues(dir.String(), reason).Inc()
}
