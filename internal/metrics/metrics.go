// Package metrics exposes attlsd's counters in the Prometheus format: it
// observes the proxy's connection events, counts reloads, and reads the
// live connections, the policy generation and certificate expiry from
// the server at each scrape.
package metrics

import (
	"crypto/x509"
	"net/http"
	"sync"
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

	opened    *prometheus.CounterVec
	closed    *prometheus.CounterVec
	refused   *prometheus.CounterVec
	failed    *prometheus.CounterVec
	handshake *prometheus.HistogramVec
	reloads   *prometheus.CounterVec

	// mu guards the byte totals of closed connections, to which the
	// scrape adds those of open ones.
	mu          sync.Mutex
	closedBytes map[ruleKey]*[2]float64 // in, out
}

// New registers attlsd's metrics for srv, and the Go and process
// collectors, and sets itself as srv's observer. Call it before
// srv.Start.
func New(srv *proxy.Server) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		srv: srv,
		opened: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "attlsd_connections_opened_total",
			Help: "Connections that matched a rule.",
		}, []string{"rule", "direction"}),
		closed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "attlsd_connections_closed_total",
			Help: "Connections that matched a rule and have ended.",
		}, []string{"rule", "direction"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "attlsd_connections_refused_total",
			Help: "Connections turned away for another reason than a failed handshake (no_rule, max_connections, not_redirected, redirect_loop, tls_inside_tls).",
		}, []string{"rule", "direction", "reason"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "attlsd_handshake_failures_total",
			Help: "Failed TLS handshakes, and failed connects before outbound ones, by reason.",
		}, []string{"direction", "reason"}),
		handshake: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "attlsd_handshake_duration_seconds",
			Help:    "Time taken by successful TLS handshakes.",
			Buckets: []float64{.0005, .001, .002, .005, .01, .02, .05, .1, .2, .5, 1, 2, 5},
		}, []string{"direction"}),
		closedBytes: map[ruleKey]*[2]float64{},
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "attlsd_reloads_total",
			Help: "Policy reloads by result: applied or rejected.",
		}, []string{"result"}),
	}
	for _, r := range []string{"applied", "rejected"} {
		m.reloads.WithLabelValues(r)
	}
	m.reg.MustRegister(m.opened, m.closed, m.refused, m.failed, m.handshake, m.reloads,
		&live{m}, collectors.NewGoCollector(),
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

// Opened implements proxy.Observer.
func (m *Metrics) Opened(rule string, dir policy.Direction) {
	m.opened.WithLabelValues(rule, dir.String()).Inc()
}

// Closed implements proxy.Observer.
func (m *Metrics) Closed(rule string, dir policy.Direction, in, out int64) {
	m.closed.WithLabelValues(rule, dir.String()).Inc()
	k := ruleKey{rule, dir.String()}
	m.mu.Lock()
	b := m.closedBytes[k]
	if b == nil {
		b = new([2]float64)
		m.closedBytes[k] = b
	}
	b[0] += float64(in)
	b[1] += float64(out)
	m.mu.Unlock()
}

// Refused implements proxy.Observer.
func (m *Metrics) Refused(rule string, dir policy.Direction, reason string) {
	m.refused.WithLabelValues(rule, dir.String(), reason).Inc()
}

// Handshake implements proxy.Observer.
func (m *Metrics) Handshake(dir policy.Direction, d time.Duration) {
	m.handshake.WithLabelValues(dir.String()).Observe(d.Seconds())
}

// HandshakeFailed implements proxy.Observer.
func (m *Metrics) HandshakeFailed(dir policy.Direction, reason string) {
	m.failed.WithLabelValues(dir.String(), reason).Inc()
}

// live collects, at each scrape, what the server knows now: active
// connections, bytes including those of open connections, the policy
// generation and certificate expiry.
type live struct{ m *Metrics }

var (
	activeDesc = prometheus.NewDesc("attlsd_connections_active",
		"Open connections by rule.", []string{"rule", "direction"}, nil)
	bytesInDesc = prometheus.NewDesc("attlsd_bytes_in_total",
		"Bytes delivered from client (or app) to backend (or endpoint), open connections included.",
		[]string{"rule", "direction"}, nil)
	bytesOutDesc = prometheus.NewDesc("attlsd_bytes_out_total",
		"Bytes delivered from backend (or endpoint) to client (or app), open connections included.",
		[]string{"rule", "direction"}, nil)
	generationDesc = prometheus.NewDesc("attlsd_policy_generation",
		"Generation of the running policy: 1 at start, one more per applied reload.", nil, nil)
	expiryDesc = prometheus.NewDesc("attlsd_certificate_expiry_seconds",
		"Seconds until a loaded certificate expires (negative once expired).",
		[]string{"environment", "role", "subject", "serial"}, nil)
)

func (l *live) Describe(ch chan<- *prometheus.Desc) {
	ch <- activeDesc
	ch <- bytesInDesc
	ch <- bytesOutDesc
	ch <- generationDesc
	ch <- expiryDesc
}

type ruleKey struct{ rule, dir string }

func (l *live) Collect(ch chan<- prometheus.Metric) {
	// Closed totals first, then open connections: a connection that
	// closes in between is counted once in the next scrape, never lost
	// from a counter.
	in, out := map[ruleKey]float64{}, map[ruleKey]float64{}
	l.m.mu.Lock()
	for k, b := range l.m.closedBytes {
		in[k], out[k] = b[0], b[1]
	}
	l.m.mu.Unlock()
	active := map[ruleKey]float64{}
	for _, c := range l.m.srv.Connections() {
		if c.Rule == "" {
			continue
		}
		k := ruleKey{c.Rule, c.Direction}
		active[k]++
		in[k] += float64(c.BytesIn)
		out[k] += float64(c.BytesOut)
	}
	for k, v := range active {
		ch <- prometheus.MustNewConstMetric(activeDesc, prometheus.GaugeValue, v, k.rule, k.dir)
	}
	for k, v := range in {
		ch <- prometheus.MustNewConstMetric(bytesInDesc, prometheus.CounterValue, v, k.rule, k.dir)
	}
	for k, v := range out {
		ch <- prometheus.MustNewConstMetric(bytesOutDesc, prometheus.CounterValue, v, k.rule, k.dir)
	}

	gen, p := l.m.srv.Generation()
	ch <- prometheus.MustNewConstMetric(generationDesc, prometheus.GaugeValue, float64(gen))
	now := time.Now()
	for _, env := range p.Environments {
		if env.Pair != nil && env.Pair.Leaf != nil {
			ch <- expiry(env.Name, "certificate", env.Pair.Leaf, now)
		}
		for _, c := range env.TrustCerts() {
			ch <- expiry(env.Name, "trust", c, now)
		}
	}
}

func expiry(env, role string, c *x509.Certificate, now time.Time) prometheus.Metric {
	return prometheus.MustNewConstMetric(expiryDesc, prometheus.GaugeValue,
		c.NotAfter.Sub(now).Seconds(), env, role, c.Subject.String(), c.SerialNumber.Text(16))
}
