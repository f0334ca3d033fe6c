package proxy

import (
	"context"
	"errors"
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
	// loops spots attlsd's own connections redirected back to it.
	loops *loopGuard
	// fields gathers what the closing log line says, step by step.
	fields zerolog.Context

	in  atomic.Int64 // client to backend
	out atomic.Int64 // backend to client
}

// serve takes the connection through its steps and logs one line when it
// ends. The listener's kind decides the steps: inbound terminates TLS in
// front of a backend, outbound originates TLS for an app.
func (c *conn) serve(ctx context.Context, p *policy.Policy, l *policy.Listener) {
	var err error
	switch l.Kind {
	case policy.ListenInbound:
		err = c.inbound(ctx, l)
	case policy.ListenOutbound:
		err = c.portMapped(ctx, l)
	case policy.ListenIntercept:
		err = c.intercepted(ctx, p)
	}
	c.finish(err)
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

// remoteError marks a failure on the far side of attlsd, a backend or a
// TLS endpoint, which an operator has to fix.
type remoteError struct{ err error }

func (e *remoteError) Error() string { return e.err.Error() }
func (e *remoteError) Unwrap() error { return e.err }

// finish closes the client and writes the connection's one log line:
// info for an ordinary end, warn for a refused client, error for a
// backend or endpoint that failed.
func (c *conn) finish(err error) {
	c.raw.Close()
	log := c.fields.Logger()
	ev := log.Info()
	var ref *refusal
	var re *remoteError
	switch {
	case errors.As(err, &ref) && ref.routine:
	case errors.As(err, &ref):
		ev = log.Warn()
		if ref.code != 0 {
			ev = ev.Int(logkey.Code, ref.code)
		}
	case errors.As(err, &re):
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
