package policy

import (
	"crypto/x509"
	"fmt"
	"time"

	"github.com/hashicorp/hcl/v2"
)

// expirySoon is how close to its end a certificate's validity draws
// before check warns that it should be renewed; see soonWindow.
const expirySoon = 14 * 24 * time.Hour

// validity warns about a certificate that peers would refuse for its
// dates: expired, not valid yet, or expiring within soonWindow. These
// are warnings, not errors: attlsd starts anyway, as AT-TLS does, and a
// reload must not fail while an operator is part way through rotating
// the files; a renewed certificate is picked up on the next handshake.
func (d *decoder) validity(leaf *x509.Certificate, file string, attr *hcl.Attribute) {
	rng := attr.Expr.Range()
	switch {
	case d.now.After(leaf.NotAfter):
		d.warnf(rng, "Certificate expired", "certificate %q expired on %s; TLS "+
			"peers refuse it until it is renewed", file, dateText(leaf.NotAfter))
	case d.now.Before(leaf.NotBefore):
		d.warnf(rng, "Certificate not yet valid", "certificate %q is not valid "+
			"before %s; TLS peers refuse it until then (is the clock right?)",
			file, dateText(leaf.NotBefore))
	case leaf.NotAfter.Sub(d.now) < soonWindow(leaf):
		d.warnf(rng, "Certificate expires soon", "certificate %q expires on %s, "+
			"within %s; renew it", file, dateText(leaf.NotAfter),
			windowText(soonWindow(leaf)))
	}
}

// soonWindow is how long before its end a certificate expires soon:
// expirySoon, or a fifth of its validity when that is shorter, so that a
// short-lived certificate, renewed every few hours, does not warn at
// every reload but only when its renewal is overdue.
func soonWindow(c *x509.Certificate) time.Duration {
	return min(expirySoon, c.NotAfter.Sub(c.NotBefore)/5)
}

// windowText writes a window as "14 days", or as a Go duration.
func windowText(w time.Duration) string {
	if day := 24 * time.Hour; w%day == 0 {
		return fmt.Sprintf("%d days", w/day)
	}
	return formatDuration(w.Round(time.Second))
}

// dateText writes a certificate date in UTC to the minute.
func dateText(t time.Time) string {
	return t.UTC().Format("2006-01-02 15:04 UTC")
}
