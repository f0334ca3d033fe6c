package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/attlsd/attlsd/proxy"
)

// live collects, at each scrape, what the server has counted per rule,
// the policy generation and certificate expiry. The per-rule values come
// from one snapshot (proxy.Server.RuleStats), in which a connection that
// ends moves its bytes from open to closed at once: the counters never go
// down between scrapes. A rule that a reload removed disappears once its
// last connection has closed.
type live struct{ srv *proxy.Server }

var (
	ruleLabels = []string{"rule", "direction"}
	activeDesc = prometheus.NewDesc("attlsd_connections_active",
		"Open connections by rule; 0 for a rule of the policy without any.", ruleLabels, nil)
	openedDesc = prometheus.NewDesc("attlsd_connections_opened_total",
		"Connections that matched a rule.", ruleLabels, nil)
	closedDesc = prometheus.NewDesc("attlsd_connections_closed_total",
		"Connections that matched a rule and have ended.", ruleLabels, nil)
	bytesInDesc = prometheus.NewDesc("attlsd_bytes_in_total",
		"Bytes delivered from client (or app) to backend (or endpoint), open connections included.",
		ruleLabels, nil)
	bytesOutDesc = prometheus.NewDesc("attlsd_bytes_out_total",
		"Bytes delivered from backend (or endpoint) to client (or app), open connections included.",
		ruleLabels, nil)
	refusedDesc = prometheus.NewDesc("attlsd_connections_refused_total",
		"Connections turned away for another reason than a failed handshake (no_rule, max_connections, not_redirected, redirect_loop, tls_inside_tls).",
		[]string{"rule", "direction", "reason"}, nil)
	backendDesc = prometheus.NewDesc("attlsd_backend_failures_total",
		"Inbound connections whose backend could not be reached or written to (connect_refused, connect_timeout, resolve, no_socket, header_write, connect_failed, shutdown).",
		[]string{"rule", "reason"}, nil)
	generationDesc = prometheus.NewDesc("attlsd_policy_generation",
		"Generation of the running policy: 1 at start, one more per applied reload.", nil, nil)
)

func (l *live) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{activeDesc, openedDesc, closedDesc, bytesInDesc,
		bytesOutDesc, refusedDesc, backendDesc, generationDesc, expiryDesc} {
		ch <- d
	}
}

func (l *live) Collect(ch chan<- prometheus.Metric) {
	for _, st := range l.srv.RuleStats() {
		collectRule(ch, st)
	}
	gen, p := l.srv.Generation()
	ch <- prometheus.MustNewConstMetric(generationDesc, prometheus.GaugeValue, float64(gen))
	collectExpiry(ch, p)
}

// collectRule sends one rule's samples. The refusals that no rule took
// have only their refusal counts.
func collectRule(ch chan<- prometheus.Metric, st proxy.RuleStats) {
	for reason, n := range st.Refused {
		ch <- counter(refusedDesc, n, st.Rule, st.Direction, reason)
	}
	if st.Rule == "" {
		return
	}
	ch <- prometheus.MustNewConstMetric(activeDesc, prometheus.GaugeValue,
		float64(st.Active), st.Rule, st.Direction)
	ch <- counter(openedDesc, st.Opened, st.Rule, st.Direction)
	ch <- counter(closedDesc, st.Closed, st.Rule, st.Direction)
	ch <- counter(bytesInDesc, st.BytesIn, st.Rule, st.Direction)
	ch <- counter(bytesOutDesc, st.BytesOut, st.Rule, st.Direction)
	for reason, n := range st.BackendFailures {
		ch <- counter(backendDesc, n, st.Rule, reason)
	}
}

func counter(d *prometheus.Desc, n int64, labels ...string) prometheus.Metric {
	return prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(n), labels...)
}
