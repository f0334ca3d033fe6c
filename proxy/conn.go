package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
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
	// of the rule is held, under Server.connMu, as are held (the slot is
	// still held, so the connection's bytes are live) and up.
	ruleName string
	rule     *policy.Rule
	held     bool
	// connecting marks a connection from the start of its connect to the
	// backend or endpoint until it records its upstream or ends, under
	// Server.connMu.
	connecting bool
	// up is the raw socket to the backend or endpoint, which Close closes
	// with the client's: a relay blocked writing to a peer that stopped
	// reading wakes only when its own socket closes.
	up net.Conn
	// cutBy is the reason Close gave when it cut the connection, under
	// Server.connMu; empty while it was not cut.
	cutBy string

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
		err = c.endApp(c.portMapped(ctx, l))
	case policy.ListenIntercept:
		err = c.endApp(c.intercepted(ctx, p))
	}
	if err != errHandedOff {
		c.finish(err)
	}
}

// endApp ends in order the connection of an app whose outbound
// connection failed before its relay (err not nil), as inbound does for
// a client whose backend failed: the app has usually sent its request,
// and a plain close with that unread would reset the connection.
func (c *conn) endApp(err error) error {
	if err != nil && err != errHandedOff {
		closeCleanly(c.raw)
	}
	return err
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

// abort ends the connection now, for reason: its relay if one runs
// (cut, see relay.abort), its client socket and its upstream socket.
// s.connMu must be held (c.up, c.cutBy).
func (c *conn) abort(reason string) {
	c.cutBy = reason
	if r := c.rl.Load(); r != nil {
		r.abort()
	}
	c.raw.Close()
	if c.up != nil {
		c.up.Close()
	}
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
	if !c.s.acquire(c, rule) {
		return &refusal{kind: "max_connections", reason: "rule " + strconv.Quote(rule.Name) +
			" already has its max_connections of " + strconv.Itoa(rule.MaxConnections) + " open"}
	}
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

// dial connects to the rule's backend. Meanwhile the connection is
// marked as connecting: the backend may accept it, and ask /connections
// about it, before the connect call has returned here, and the admin
// endpoint then waits for the connection to record its upstream.
func (c *conn) dial(ctx context.Context, rule *policy.Rule) (net.Conn, error) {
	c.s.setConnecting(c, true)
	return dial(ctx, rule)
}

// upstream records attlsd's connection to the backend or endpoint as soon
// as it exists: its addresses, so that a backend asking /connections
// about the connection it has just accepted finds it, and its socket, so
// that Close reaches it.
func (c *conn) upstream(u net.Conn) {
	c.update(func(i *ConnInfo) {
		i.State = "relay"
		i.UpstreamLocal = u.LocalAddr().String()
		i.UpstreamRemote = u.RemoteAddr().String()
	})
	if tc, ok := u.(*tls.Conn); ok {
		// Closing a tls.Conn may first try to send close_notify; the raw
		// socket closes at once.
		u = tc.NetConn()
	}
	c.s.attach(c, u)
}

// ruleTimeouts returns the silence and write bounds of rule for one relay.
func ruleTimeouts(rule *policy.Rule) *timeouts {
	return &timeouts{idle: rule.IdleTimeout, halfClose: rule.HalfCloseTimeout,
		write: rule.WriteTimeout}
}

// remoteFailed counts a failure on the far side: an outbound endpoint's
// under its kind, an inbound backend's under its rule.
func (c *conn) remoteFailed(re *remoteError) {
	switch {
	case re.kind != "":
		c.s.obs.HandshakeFailed(c.dir, re.kind)
	case c.dir == policy.Inbound && c.rule != nil:
		c.s.backendFailed(c.rule.Name, backendReason(re.err))
	}
}

// backendReason labels why a backend could not be reached or written to.
func backendReason(err error) string {
	var dnsErr *net.DNSError
	var op *net.OpError
	switch {
	case errors.As(err, &dnsErr):
		return "resolve"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connect_refused"
	case errors.Is(err, syscall.ENOENT):
		return "no_socket"
	case errors.Is(err, context.Canceled):
		return "shutdown"
	case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
		return "connect_timeout"
	case errors.As(err, &op) && op.Op == "write":
		return "header_write"
	}
	return "connect_failed"
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
	c.s.setConnecting(c, false)
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
		c.s.refused(rule, c.dir, ref.kind)
		ev = log.Warn()
	case errors.As(err, &re):
		c.remoteFailed(re)
		ev = log.Error()
	}
	if ref != nil && ref.code != 0 {
		ev = ev.Int(logkey.Code, ref.code)
	}
	if c.rule != nil {
		c.s.release(c)
	}
	reason := c.reason(err)
	// Closed once counted, so a client that sees the end finds it in the
	// metrics.
	c.raw.Close()
	ev.Int64(logkey.BytesIn, c.in.Load()).
		Int64(logkey.BytesOut, c.out.Load()).
		Dur(logkey.Duration, time.Since(c.start)).
		Str(logkey.Reason, reason).
		Msg("connection closed")
	if c.end != nil {
		c.end()
	}
}

// reason is the close line's reason for err, on one line: "closed" for a
// clean end, Close's reason for a connection it cut (what the relay saw
// then is only its sockets closing under it), else the error.
func (c *conn) reason(err error) string {
	if err == nil {
		return "closed"
	}
	if cut := c.s.cutReason(c); cut != "" {
		return cut
	}
	return strings.ReplaceAll(err.Error(), "\n", "; ")
}
