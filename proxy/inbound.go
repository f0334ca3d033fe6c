package proxy

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"time"

	"github.com/attlsd/attlsd/internal/logkey"
	"github.com/attlsd/attlsd/policy"
)

// inbound runs an inbound connection: match, handshake, dial the backend,
// write the header, relay.
func (c *conn) inbound(ctx context.Context, l *policy.Listener) error {
	rule, err := c.match(l)
	if err != nil {
		return err
	}
	c.fields = c.fields.Str(logkey.Backend, rule.Backend.String())
	c.update(func(i *ConnInfo) { i.Target = rule.Backend.String() })

	client := c.raw
	meta := Meta{Client: c.raw.RemoteAddr(), Local: c.raw.LocalAddr(),
		ConnID: c.info.ID, Rule: rule.Name}
	if rule.TLS {
		began := time.Now()
		tc, err := handshake(c.raw, rule)
		if err != nil {
			return err
		}
		c.s.obs.Handshake(c.dir, time.Since(began))
		client = tc
		c.describeTLS(tc, rule, &meta)
	}

	backend, err := c.dial(ctx, rule.Backend)
	if err != nil {
		return &remoteError{err: fmt.Errorf("dial %s: %w", rule.Backend, err)}
	}
	c.upstream(backend)
	if err := writeHeader(backend, rule.ProxyProtocol, &meta); err != nil {
		backend.Close()
		return &remoteError{err: err}
	}
	return relay(side{conn: client, name: "client"}, side{conn: backend, name: "backend"},
		&c.in, &c.out, ruleTimeouts(rule))
}

// describeTLS records the negotiated parameters in the log fields and the
// header metadata.
func (c *conn) describeTLS(tc *tls.Conn, rule *policy.Rule, m *Meta) {
	cs := tc.ConnectionState()
	m.TLS = &cs
	m.CertVerified = len(cs.VerifiedChains) > 0
	if p := rule.Environment.Pair; p != nil {
		m.SigScheme = sigScheme(cs.Version, p.Leaf)
	}
	c.update(func(i *ConnInfo) {
		i.TLSVersion = versionName(cs.Version)
		i.Cipher = tls.CipherSuiteName(cs.CipherSuite)
		i.SNI, i.ALPN = cs.ServerName, cs.NegotiatedProtocol
	})
	c.fields = c.fields.Str(logkey.SNI, cs.ServerName).
		Str(logkey.ALPN, cs.NegotiatedProtocol).
		Str(logkey.TLSVersion, versionName(cs.Version)).
		Str(logkey.Cipher, tls.CipherSuiteName(cs.CipherSuite)).
		Str(logkey.Group, groupName(cs.CurveID))
}

// writeHeader sends the metadata header before any application byte.
func writeHeader(backend net.Conn, format policy.ProxyProtocol, m *Meta) error {
	h, err := header(format, m)
	if err != nil || len(h) == 0 {
		return err
	}
	if _, err := backend.Write(h); err != nil {
		return fmt.Errorf("write proxy header: %w", err)
	}
	return nil
}
