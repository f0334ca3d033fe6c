package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/attlsd/attlsd/internal/logkey"
	"github.com/attlsd/attlsd/policy"
)

// conn is one accepted connection on its way through attlsd.
type conn struct {
	id    string
	raw   net.Conn
	start time.Time
	// fields gathers what the closing log line says, step by step.
	fields zerolog.Context

	in  atomic.Int64 // client to backend
	out atomic.Int64 // backend to client
}

// serve takes the connection through its steps and logs one line when it
// ends: match, handshake, dial, header, relay.
func (c *conn) serve(ctx context.Context, l *policy.Listener) {
	err := c.run(ctx, l)
	c.finish(err)
}

func (c *conn) run(ctx context.Context, l *policy.Listener) error {
	rule, err := c.match(l)
	if err != nil {
		return err
	}
	c.fields = c.fields.Str(logkey.Rule, rule.Name).
		Str(logkey.Backend, rule.Backend.String())

	client := c.raw
	meta := Meta{Client: c.raw.RemoteAddr(), Local: c.raw.LocalAddr(),
		ConnID: c.id, Rule: rule.Name}
	if rule.TLS {
		tc, err := handshake(c.raw, rule)
		if err != nil {
			return err
		}
		client = tc
		c.describeTLS(tc, rule, &meta)
	}

	backend, err := dial(ctx, rule.Backend)
	if err != nil {
		c.raw.Close()
		return &backendError{fmt.Errorf("dial %s: %w", rule.Backend, err)}
	}
	if err := writeHeader(backend, rule.ProxyProtocol, &meta); err != nil {
		backend.Close()
		return &backendError{err}
	}
	return relay(side{client, "client"}, side{backend, "backend"}, &c.in, &c.out)
}

// match maps the connection to the first rule of its listener that takes
// the client. It runs before the handshake because the rule decides which
// certificate and TLS settings the handshake uses, and every condition it
// checks (local port, client address) is known at accept, as in AT-TLS.
func (c *conn) match(l *policy.Listener) (*policy.Rule, error) {
	ap, err := netip.ParseAddrPort(c.raw.RemoteAddr().String())
	if err != nil {
		return nil, &refusal{reason: "client address unknown", err: err}
	}
	rule := l.Match(ap.Addr())
	if rule == nil {
		return nil, &refusal{reason: "no rule takes this client"}
	}
	return rule, nil
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

// backendError marks a failure on the backend's side, which an operator
// has to fix.
type backendError struct{ err error }

func (e *backendError) Error() string { return e.err.Error() }
func (e *backendError) Unwrap() error { return e.err }

// finish closes the client and writes the connection's one log line:
// info for an ordinary end, warn for a refused client, error for a
// backend that could not be reached.
func (c *conn) finish(err error) {
	c.raw.Close()
	log := c.fields.Logger()
	ev := log.Info()
	var ref *refusal
	var be *backendError
	switch {
	case errors.As(err, &ref) && ref.routine:
	case errors.As(err, &ref):
		ev = log.Warn()
		if ref.code != 0 {
			ev = ev.Int(logkey.Code, ref.code)
		}
	case errors.As(err, &be):
		ev = log.Error()
	}
	reason := "closed"
	if err != nil {
		reason = err.Error()
	}
	ev.Int64(logkey.BytesIn, c.in.Load()).
		Int64(logkey.BytesOut, c.out.Load()).
		Dur(logkey.Duration, time.Since(c.start)).
		Str(logkey.Reason, reason).
		Msg("connection closed")
}
