// Package proxy owns the data path: it binds the policy's listeners,
// accepts connections, runs the TLS handshake, dials backends, writes the
// PROXY header and copies bytes both ways with half-close. A new policy
// is swapped in with Apply while connections flow.
package proxy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"slices"
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

// ErrClosed is returned by Apply after Close.
var ErrClosed = errors.New("server closed")

// Server serves a policy's listeners and takes new policies without
// dropping a connection. The zero value is not usable; use New.
type Server struct {
	log zerolog.Logger

	// current is what a new connection runs under. Apply replaces it in
	// one store; a connection reads it once, at accept, and keeps it.
	current atomic.Pointer[generation]

	ctx    context.Context // cancelled by Close; ends pending dials
	cancel context.CancelFunc

	// mu serialises Apply and Close and guards listeners and closed.
	mu        sync.Mutex
	listeners map[string]*listener // by policy.Listener.Addr
	closed    bool

	// connMu guards conns, the per-rule counts, aborted and the count
	// of connections connecting to their backend or endpoint, and the
	// channel closed when one of those gets there or ends.
	connMu     sync.Mutex
	conns      map[*conn]struct{}
	rules      ruleBook
	aborted    bool // Close has closed every connection
	connecting int
	settled    chan struct{}
	wg         sync.WaitGroup

	idPrefix string
	idSeq    atomic.Uint64

	loops    loopGuard
	obs      Observer
	draining atomic.Bool
}

// generation is one applied policy: its number, counted from 1, and its
// listeners by address.
type generation struct {
	n      uint64
	policy *policy.Policy
	byAddr map[string]*policy.Listener
}

// New returns a server for p that logs to log. It binds nothing until
// Start.
func New(p *policy.Policy, log zerolog.Logger) *Server {
	ctx, cancel := context.WithCancel(context.Background())
	var b [4]byte
	rand.Read(b[:])
	s := &Server{
		log:       log,
		ctx:       ctx,
		cancel:    cancel,
		listeners: make(map[string]*listener),
		conns:     make(map[*conn]struct{}),
		settled:   make(chan struct{}),
		idPrefix:  hex.EncodeToString(b[:]) + "-",
		obs:       nopObserver{},
	}
	s.current.Store(&generation{policy: p, byAddr: byAddr(p)})
	return s
}

// Observe sends connection events to o. Call it before Start.
func (s *Server) Observe(o Observer) { s.obs = o }

// Start binds every listener of the policy given to New and starts
// accepting. If any address cannot be bound, nothing stays bound and the
// error names it.
func (s *Server) Start() error {
	_, err := s.Apply(s.current.Load().policy)
	return err
}

// Apply makes p the policy of every new connection and returns its
// generation number. Listeners whose address p keeps go on accepting on
// the same socket, so no connection attempt is refused; new addresses are
// bound first and, if any cannot be, Apply changes nothing and returns a
// *BindError. Listeners p no longer has stop accepting. Open connections
// keep the rule and TLS configuration they started with.
//
// Rules of p whose environment and TLS settings did not change keep their
// TLS configuration (see policy.Inherit), and with it their session ticket
// keys.
func (s *Server) Apply(p *policy.Policy) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, ErrClosed
	}
	prev := s.current.Load()
	next := &generation{n: prev.n + 1, policy: p, byAddr: byAddr(p)}
	added, err := s.bindNew(next.byAddr)
	if err != nil {
		return 0, err
	}
	if prev.n > 0 {
		p.Inherit(prev.policy)
	}
	for addr, l := range s.listeners {
		if next.byAddr[addr] != nil {
			l.gen.Store(next)
		}
	}
	s.current.Store(next)

	s.startAccepting(added, next)
	for addr, l := range s.listeners {
		if next.byAddr[addr] == nil {
			l.ln.Close()
			delete(s.listeners, addr)
		}
	}
	return next.n, nil
}

// bindNew binds the listeners of next not bound yet, or none of them.
// A new address may overlap one that next drops on the same port (all
// addresses and one address, say), which the kernel refuses while the
// old socket listens. So when a port is refused as in use, the sockets of
// ours that next drops on that very port are closed and binding is tried
// again; if it still fails, they are bound again. Ports where that may
// happen are bound last, so that a port held by another process fails
// the reload before any socket of ours is closed.
func (s *Server) bindNew(next map[string]*policy.Listener) ([]*listener, error) {
	fresh := s.unbound(next)
	var dropped []*policy.Listener
	for {
		ls, err := bindAll(fresh)
		if err == nil {
			return ls, nil
		}
		drop := s.dropInUse(next, err)
		if len(drop) == 0 {
			s.rebind(dropped)
			return nil, err
		}
		dropped = append(dropped, drop...)
	}
}

// unbound returns the listeners of next not bound yet: first those on
// ports where no listener of ours is going away, then the others, each
// part by address.
func (s *Server) unbound(next map[string]*policy.Listener) []*policy.Listener {
	leaving := map[uint16]bool{}
	for addr, l := range s.listeners {
		if next[addr] == nil {
			leaving[l.port] = true
		}
	}
	var first, last []*policy.Listener
	for addr, pl := range next {
		switch {
		case s.listeners[addr] != nil:
		case leaving[pl.Port]:
			last = append(last, pl)
		default:
			first = append(first, pl)
		}
	}
	addrOrder := func(a, b *policy.Listener) int { return strings.Compare(a.Addr, b.Addr) }
	slices.SortFunc(first, addrOrder)
	slices.SortFunc(last, addrOrder)
	return append(first, last...)
}

// dropInUse closes the listeners that next drops on the port err found in
// use, and returns them. Any other failure closes nothing.
func (s *Server) dropInUse(next map[string]*policy.Listener, err error) []*policy.Listener {
	var be *BindError
	if !errors.As(err, &be) || !errors.Is(err, syscall.EADDRINUSE) {
		return nil
	}
	cur := s.current.Load()
	var out []*policy.Listener
	for addr, l := range s.listeners {
		if next[addr] == nil && l.port == be.Listener.Port {
			l.ln.Close()
			delete(s.listeners, addr)
			out = append(out, cur.byAddr[addr])
		}
	}
	return out
}

// rebind binds the running policy's listeners that bindNew closed again.
func (s *Server) rebind(pls []*policy.Listener) {
	if len(pls) == 0 {
		return
	}
	old, err := bindAll(pls)
	if err != nil {
		s.log.Error().Err(err).Msg("cannot bind the running policy's listeners again")
		return
	}
	s.startAccepting(old, s.current.Load())
}

// startAccepting registers ls, serving generation g, and accepts on each.
func (s *Server) startAccepting(ls []*listener, g *generation) {
	for _, l := range ls {
		l.gen.Store(g)
		s.listeners[l.addr] = l
		s.wg.Add(1)
		go s.accept(l)
	}
}

func byAddr(p *policy.Policy) map[string]*policy.Listener {
	m := make(map[string]*policy.Listener, len(p.Listeners))
	for _, pl := range p.Listeners {
		m[pl.Addr] = pl
	}
	return m
}

// Generation returns the number of the policy new connections run under
// (0 before Start) and the policy.
func (s *Server) Generation() (uint64, *policy.Policy) {
	g := s.current.Load()
	return g.n, g.policy
}

// Addrs returns the bound addresses, in the current policy's listener
// order.
func (s *Server) Addrs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, pl := range s.current.Load().policy.Listeners {
		if l := s.listeners[pl.Addr]; l != nil {
			out = append(out, l.ln.Addr().String())
		}
	}
	return out
}

// Close is CloseFor with the reason "closed by attlsd at shutdown".
func (s *Server) Close() error { return s.CloseFor("closed by attlsd at shutdown") }

// CloseFor stops accepting, closes both sockets of every open connection
// (the client's and the backend's or endpoint's) and waits for their
// goroutines to end. Closing the client alone is not enough: a relay
// blocked writing to a backend that has stopped reading wakes only when
// the backend socket closes. A relay is cut (a cleartext peer sees a
// reset, a TLS peer no close_notify), and each connection closed is
// logged with reason, such as "drain timeout: closed by attlsd".
func (s *Server) CloseFor(reason string) error {
	s.mu.Lock()
	s.closed = true
	s.cancel()
	s.closeListeners()
	s.mu.Unlock()
	s.connMu.Lock()
	s.aborted = true
	for c := range s.conns {
		c.abort(reason)
	}
	s.connMu.Unlock()
	s.wg.Wait()
	return nil
}

// cutReason returns the reason CloseFor gave when it cut c, or "".
func (s *Server) cutReason(c *conn) string {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	return c.cutBy
}

// closeListeners stops accepting on every listener. s.mu must be held.
func (s *Server) closeListeners() {
	for addr, l := range s.listeners {
		l.ln.Close()
		delete(s.listeners, addr)
	}
}

// attach registers u as c's upstream socket for Close, or closes it at
// once when Close has already run, and ends c's connecting.
func (s *Server) attach(c *conn, u net.Conn) {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	s.markConnecting(c, false)
	if s.aborted {
		u.Close()
		return
	}
	c.up = u
}

// setConnecting marks c as connecting to its backend or endpoint, or as
// no longer connecting.
func (s *Server) setConnecting(c *conn, on bool) {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	s.markConnecting(c, on)
}

// markConnecting is setConnecting with s.connMu held. The end of a
// connect wakes what Connecting handed out.
func (s *Server) markConnecting(c *conn, on bool) {
	if c.connecting == on {
		return
	}
	c.connecting = on
	if on {
		s.connecting++
		c.update(func(i *ConnInfo) { i.State = "connecting" })
		return
	}
	s.connecting--
	close(s.settled)
	s.settled = make(chan struct{})
}

// nextID returns a connection id: a random per-process prefix and a
// sequence number, unique within the process and unlikely to repeat
// across restarts.
func (s *Server) nextID() string {
	return s.idPrefix + strconv.FormatUint(s.idSeq.Add(1), 16)
}

// Accepted returns how many connections have been accepted since New.
func (s *Server) Accepted() uint64 { return s.idSeq.Load() }

// track registers c so Close can reach it; the returned func forgets it.
func (s *Server) track(c *conn) func() {
	s.connMu.Lock()
	s.conns[c] = struct{}{}
	s.connMu.Unlock()
	return func() {
		s.connMu.Lock()
		delete(s.conns, c)
		s.connMu.Unlock()
	}
}

// newConn prepares the per-connection state and its log fields.
func (s *Server) newConn(raw net.Conn, g *generation, pl *policy.Listener) *conn {
	c := &conn{s: s, raw: raw, start: time.Now()}
	if pl != nil && pl.Kind != policy.ListenInbound {
		c.dir = policy.Outbound
	}
	c.info = ConnInfo{ID: s.nextID(), Generation: g.n, Direction: c.dir.String(),
		State: "handshake", Client: raw.RemoteAddr().String(),
		Listener: raw.LocalAddr().String(), Start: c.start}
	c.fields = s.log.With().
		Str(logkey.ConnID, c.info.ID).
		Str(logkey.Direction, c.dir.String()).
		Uint64(logkey.Generation, g.n).
		Str(logkey.Client, c.info.Client).
		Str(logkey.Listener, c.info.Listener)
	return c
}

// Drain begins the shutdown before it returns: readiness fails from now
// on, and every listener stops accepting. Open connections go on. No
// policy can be applied after it.
func (s *Server) Drain() {
	s.draining.Store(true)
	s.mu.Lock()
	s.closed = true
	s.closeListeners()
	s.mu.Unlock()
}

// Shutdown drains (see Drain) and waits for open connections to end,
// until ctx is done; then it returns ctx's error and Close ends the rest.
func (s *Server) Shutdown(ctx context.Context) error {
	s.Drain()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for s.Open() > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	return nil
}

// Ready says why the server cannot take connections, or returns nil: a
// policy is applied, every one of its listeners is bound, and no drain
// has begun.
func (s *Server) Ready() error {
	if s.draining.Load() {
		return errors.New("draining: attlsd is shutting down")
	}
	g := s.current.Load()
	if g.n == 0 {
		return errors.New("no policy applied yet")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, pl := range g.policy.Listeners {
		if s.listeners[pl.Addr] == nil {
			return fmt.Errorf("listener %s is not bound", pl.Addr)
		}
	}
	return nil
}

// Draining reports whether Shutdown has begun.
func (s *Server) Draining() bool { return s.draining.Load() }
