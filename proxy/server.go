// Package proxy owns the data path: it binds the policy's listeners,
// accepts connections, runs the TLS handshake, dials backends, writes the
// PROXY header and copies bytes both ways with half-close.
package proxy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/attlsd/attlsd/internal/logkey"
	"github.com/attlsd/attlsd/policy"
)

// Server serves one policy's listeners. The zero value is not usable; use
// New.
type Server struct {
	log       zerolog.Logger
	policy    *policy.Policy
	listeners []*listener

	ctx    context.Context // cancelled by Close; ends pending dials
	cancel context.CancelFunc

	mu    sync.Mutex
	conns map[*conn]struct{}
	wg    sync.WaitGroup

	idPrefix string
	idSeq    atomic.Uint64

	loops loopGuard
}

// New returns a server for p that logs to log. It binds nothing until
// Start.
func New(p *policy.Policy, log zerolog.Logger) *Server {
	ctx, cancel := context.WithCancel(context.Background())
	var b [4]byte
	rand.Read(b[:])
	return &Server{
		log:      log,
		policy:   p,
		ctx:      ctx,
		cancel:   cancel,
		conns:    make(map[*conn]struct{}),
		idPrefix: hex.EncodeToString(b[:]) + "-",
	}
}

// Start binds every listener of the policy and starts accepting. If any
// address cannot be bound, nothing stays bound and the error names it.
func (s *Server) Start() error {
	ls, err := bindAll(s.policy.Listeners)
	if err != nil {
		return err
	}
	s.listeners = ls
	for _, l := range ls {
		s.wg.Add(1)
		go s.accept(l)
	}
	return nil
}

// Addrs returns the bound addresses, in the policy's listener order.
func (s *Server) Addrs() []string {
	out := make([]string, len(s.listeners))
	for i, l := range s.listeners {
		out[i] = l.ln.Addr().String()
	}
	return out
}

// Close stops accepting, closes every open connection and waits for their
// goroutines to end.
func (s *Server) Close() error {
	s.cancel()
	for _, l := range s.listeners {
		l.ln.Close()
	}
	s.mu.Lock()
	for c := range s.conns {
		c.raw.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

// nextID returns a connection id: a random per-process prefix and a
// sequence number, unique within the process and unlikely to repeat
// across restarts.
func (s *Server) nextID() string {
	return s.idPrefix + strconv.FormatUint(s.idSeq.Add(1), 16)
}

// track registers c so Close can reach it; the returned func forgets it.
func (s *Server) track(c *conn) func() {
	s.mu.Lock()
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
	}
}

// newConn prepares the per-connection state and its log fields.
func (s *Server) newConn(l *listener, c *conn) {
	c.id = s.nextID()
	c.loops = &s.loops
	c.start = time.Now()
	dir := policy.Inbound
	if l.pol.Kind != policy.ListenInbound {
		dir = policy.Outbound
	}
	c.fields = s.log.With().
		Str(logkey.ConnID, c.id).
		Str(logkey.Direction, dir.String()).
		Str(logkey.Client, c.raw.RemoteAddr().String()).
		Str(logkey.Listener, l.ln.Addr().String())
}
