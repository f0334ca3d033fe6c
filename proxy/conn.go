package proxy

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/attlsd/attlsd/internal/logkey"
	"github.com/attlsd/attlsd/policy"
)

// conn is one accepted connection on its way through attlsd.
type conn struct {
	s     *Server
	raw   net.Conn
	dir   policy.Direction
	start time.Time
	// fields gathers what the closing log line says, step by step.
	fields zerolog.Context
	// ruleName is the matched rule's; rule is set once a connection slot
	// of the rule is held.
	ruleName string
	rule     *policy.Rule

	in  atomic.Int64 // client to backend
	out atomic.Int64 // backend to client

	// mu guards info, which the admin endpoint reads while the
	// connection runs; it is written a few times per connection.
	mu   sync.Mutex
	info ConnInfo

	// rl is the relay once bytes flow; Close aborts it.
	rl atomic.Pointer[relay]
	// end runs last in finish: the server forgets the connection.
	end func()
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
	if err != errHandedOff {
		c.finish(err)
	}
}

// errHandedOff says that a relay owns the connection now and finishes it.
var errHandedOff = errors.New("handed off to the relay")

// relay copies between client and backend under rule's silence bounds.
// It returns errHandedOff; done runs with the relay's result when both
// directions have ended, on whichever goroutine ends last.
func (c *conn) relay(client, backend side, rule *policy.Rule, done func(error)) error {
	r := newRelay(client, backend, &c.in, &c.out, ruleTimeouts(rule), done)
	c.rl.Store(r)
	r.run()
	return errHandedOff
}

// abort ends the connection now: its relay if one runs, else its socket.
func (c *conn) abort() {
	if r := c.rl.Load(); r != nil {
		r.abort()
	}
	c.raw.Close()
}

// match maps the connection to the first rule of its listener that takes
// the client. It runs before the handshake because the rule decides which
// certificate and TLS settings the handshake uses, and every condition it
// checks (local port, client address) is known at accept, as in AT-TLS.
func (c *conn) match(l *policy.Listener) (*policy.Rule, error) {
	ap, err := netip.ParseAddrPort(c.raw.RemoteAddr().String())
	if err != nil {
		return nil, &refusal{reason: "client address unknown", kind: "no_rule", err: err}
	}
	rule := l.Match(ap.Addr())
	if rule == nil {
		return nil, &refusal{reason: "no rule takes this client", kind: "no_rule"}
	}
	return rule, c.take(rule)
}

// take holds a connection slot of rule, or refuses the connection when
// the rule is at its max_connections.
func (c *conn) take(rule *policy.Rule) error {
	c.fields = c.fields.Str(logkey.Rule, rule.Name)
	c.ruleName = rule.Name
	if !c.s.limits.acquire(rule) {
		return &refusal{kind: "max_connections", reason: "rule " + strconv.Quote(rule.Name) +
			" already has its max_connections of " + strconv.Itoa(rule.MaxConnections) + " open"}
	}
	c.rule = rule
	c.s.obs.Opened(rule.Name, c.dir)
	c.update(func(i *ConnInfo) { i.Rule = rule.Name })
	return nil
}

// update changes the published description under the lock.
func (c *conn) update(f func(*ConnInfo)) {
	c.mu.Lock()
	f(&c.info)
	c.mu.Unlock()
}

// snapshot returns the description with current byte counts and age.
func (c *conn) snapshot() ConnInfo {
	c.mu.Lock()
	i := c.info
	c.mu.Unlock()
	i.BytesIn, i.BytesOut = c.in.Load(), c.out.Load()
	i.AgeSeconds = time.Since(i.Start).Seconds()
	return i
}

// upstream records attlsd's connection to the backend or endpoint, once
// bytes can flow.
func (c *conn) upstream(u net.Conn) {
	c.update(func(i *ConnInfo) {
		i.State = "relay"
		i.UpstreamLocal = u.LocalAddr().String()
		i.UpstreamRemote = u.RemoteAddr().String()
	})
}

// ruleTimeouts returns the silence bounds of rule for one relay.
func ruleTimeouts(rule *policy.Rule) *timeouts {
	return &timeouts{idle: rule.IdleTimeout, halfClose: rule.HalfCloseTimeout}
}

// remoteError marks a failure on the far side of attlsd, a backend or a
// TLS endpoint, which an operator has to fix.
type remoteError struct {
	err error
	// kind labels a failure to reach or verify an outbound endpoint for
	// metrics, such as "unknown_authority"; empty for other failures.
	kind string
}

func (e *remoteError) Error() string { return e.err.Error() }
func (e *remoteError) Unwrap() error { return e.err }

// finish closes the client, reports the end to the observer and writes
// the connection's one log line: info for an ordinary end, warn for a
// refused client, error for a backend or endpoint that failed.
func (c *conn) finish(err error) {
	c.raw.Close()
	log := c.fields.Logger()
	ev := log.Info()
	var ref *refusal
	var re *remoteError
	rule := c.ruleName
	switch {
	case errors.As(err, &ref) && ref.handshake:
		c.s.obs.HandshakeFailed(c.dir, ref.kind)
		if !ref.routine {
			ev = log.Warn()
		}
	case errors.As(err, &ref):
		c.s.obs.Refused(rule, c.dir, ref.kind)
		ev = log.Warn()
	case errors.As(err, &re):
		if re.kind != "" {
			c.s.obs.HandshakeFailed(c.dir, re.kind)
		}
		ev = log.Error()
	}
	if ref != nil && ref.code != 0 {
		ev = ev.Int(logkey.Code, ref.code)
	}
	if c.rule != nil {
		c.s.limits.release(c.rule)
		c.s.obs.Closed(rule, c.dir, c.in.Load(), c.out.Load())
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
	if c.end != nil {
		c.end()
	}
}
