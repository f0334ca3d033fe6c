package proxy

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/attlsd/attlsd/internal/logkey"
	"github.com/attlsd/attlsd/policy"
)

// listener is one bound socket. Which rules it serves is looked up by
// addr in the current generation at each accept.
type listener struct {
	ln   net.Listener
	addr string // policy.Listener.Addr
	port uint16
}

// bindAll binds every listener or, on the first failure, none.
func bindAll(pls []*policy.Listener) ([]*listener, error) {
	out := make([]*listener, 0, len(pls))
	for _, pl := range pls {
		ln, err := net.Listen("tcp", pl.Addr)
		if err != nil {
			for _, l := range out {
				l.ln.Close()
			}
			return nil, fmt.Errorf("listen on %s for %s: %w", pl.Addr, owner(pl), err)
		}
		out = append(out, &listener{ln: ln, addr: pl.Addr, port: pl.Port})
	}
	return out, nil
}

// owner names what a listener is for, in error messages.
func owner(pl *policy.Listener) string {
	if pl.Kind == policy.ListenIntercept {
		return fmt.Sprintf("intercept %q", pl.Intercept)
	}
	return fmt.Sprintf("rule %q", pl.Rules[0].Name)
}

// Accept backoff bounds. Accept fails while descriptors are exhausted
// (EMFILE, ENFILE); retrying at once would spin a core until one frees up.
const (
	acceptBackoffMin = 5 * time.Millisecond
	acceptBackoffMax = time.Second
)

// accept takes connections from l until it is closed.
func (s *Server) accept(l *listener) {
	defer s.wg.Done()
	var delay time.Duration
	for {
		raw, err := l.ln.Accept()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			delay = min(max(2*delay, acceptBackoffMin), acceptBackoffMax)
			s.log.Warn().Err(err).Dur("retry_in", delay).
				Str(logkey.Listener, l.addr).Msg("accept failed")
			time.Sleep(delay)
			continue
		}
		delay = 0
		s.wg.Add(1)
		go s.serve(l, raw)
	}
}

// serve runs one connection under the generation current at accept. The
// connection may outlive this goroutine (its relay parks when quiet);
// finish forgets it when it ends.
func (s *Server) serve(l *listener, raw net.Conn) {
	g := s.current.Load()
	pl := g.byAddr[l.addr]
	c := s.newConn(raw, g, pl)
	untrack := s.track(c)
	c.end = func() {
		untrack()
		s.wg.Done()
	}
	if s.ctx.Err() != nil { // Close ran between Accept and track
		raw.Close()
	}
	if pl == nil {
		// Accepted just before a reload removed the listener.
		c.finish(&refusal{reason: "listener removed by a policy reload", kind: "no_rule"})
		return
	}
	c.serve(s.ctx, g.policy, pl)
}
