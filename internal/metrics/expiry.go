package metrics

import (
	"crypto/x509"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/attlsd/attlsd/policy"
)

var expiryDesc = prometheus.NewDesc("attlsd_certificate_expiry_seconds",
	"Seconds until a loaded certificate expires (negative once expired), by role: "+
		"certificate (an environment's own), intermediate (the rest of its chain), trust.",
	[]string{"environment", "role", "subject", "serial"}, nil)

// expiryKey is one sample's labels.
type expiryKey struct{ env, role, subject, serial string }

// collectExpiry sends one sample per certificate of every environment:
// its own, the intermediates of its chain and its trust anchors.
//
// A registry refuses two samples with the same labels and fails the whole
// scrape, so each label set is sent once. The same certificate named
// twice (a CA in two trust bundles, an intermediate repeated in a chain)
// has the same labels; two distinct certificates with the same subject
// and serial, which only a misbehaving CA issues, report the earlier
// expiry.
func collectExpiry(ch chan<- prometheus.Metric, p *policy.Policy) {
	now := time.Now()
	left := map[expiryKey]time.Duration{}
	note := func(env, role string, c *x509.Certificate) {
		k := expiryKey{env, role, c.Subject.String(), fmt.Sprintf("%X", c.SerialNumber)}
		if d, ok := left[k]; !ok || c.NotAfter.Sub(now) < d {
			left[k] = c.NotAfter.Sub(now)
		}
	}
	for _, env := range p.Environments {
		if env.Pair != nil && env.Pair.Leaf != nil {
			note(env.Name, "certificate", env.Pair.Leaf)
			for _, c := range chainOf(env) {
				note(env.Name, "intermediate", c)
			}
		}
		for _, c := range env.TrustCerts() {
			note(env.Name, "trust", c)
		}
	}
	for k, d := range left {
		ch <- prometheus.MustNewConstMetric(expiryDesc, prometheus.GaugeValue, d.Seconds(),
			k.env, k.role, k.subject, k.serial)
	}
}

// chainOf parses the certificates that follow the leaf in env's chain.
// The loader has parsed them once already, so an error cannot happen.
func chainOf(env *policy.Environment) []*x509.Certificate {
	var out []*x509.Certificate
	for _, der := range env.Pair.Cert.Certificate[1:] {
		if c, err := x509.ParseCertificate(der); err == nil {
			out = append(out, c)
		}
	}
	return out
}
