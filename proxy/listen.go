package proxy

import (
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	"github.com/attlsd/attlsd/internal/logkey"
	"github.com/attlsd/attlsd/policy"
)

// listener is one bound socket. gen is the newest generation that has
// its address: a connection runs under it, so one accepted in the moment
// between a reload that removed the listener and the socket's close is
// still served, by the rules it arrived for.
type listener struct {
	ln   net.Listener
	addr string // policy.Listener.Addr
	port uint16
	gen  atomic.Pointer[generation]
}

// BindError is a listener of a policy that could not be bound. Its text
// starts with the position of the port in the policy, file:line:col.
type BindError struct {
	Listener *policy.Listener
	Err      error
}

func (e *BindError) Error() string {
	msg := "listen on " + e.Detail()
	if r := e.Listener.PortRange; r.Filename != "" {
		msg = fmt.Sprintf("%s:%d:%d: %s", r.Filename, r.Start.Line, r.Start.Column, msg)
	}
	return msg
}

// Detail says which address could not be bound, for what, and why, with
// no position: `127.0.0.1:8443 for rule "web": bind: address already in
// use`.
func (e *BindError) Detail() string {
	err := e.Err
	var op *net.OpError
	if errors.As(err, &op) { // its text repeats the address
		err = op.Err
	}
	return fmt.Sprintf("%s for %s: %v", e.Listener.Addr, owner(e.Listener), err)
}

func (e *BindError) Unwrap() error { return e.Err }

// bindAll binds every listener or, on the first failure, none. The error
// is a *BindError.
func bindAll(pls []*policy.Listener) ([]*listener, error) {
	out := make([]*listener, 0, len(pls))
	for _, pl := range pls {
		ln, err := net.Listen("tcp", pl.Addr)
		if err != nil {
			for _, l := range out {
				l.ln.Close()
			}
			return nil, &BindError{Listener: pl, Err: err}
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
			s.log.Warn().Err(err).Dur(logkey.RetryIn, delay).
				Str(logkey.Listener, l.addr).Msg("accept failed")
			time.Sleep(delay)
			continue
		}
		delay = 0
		s.wg.Add(1)
		go s.serve(l, raw)
	}
}

// serve runs one connection under its listener's generation. The
// connection may outlive this goroutine (its relay parks when quiet);
// finish forgets it when it ends.
func (s *Server) serve(l *listener, raw net.Conn) {
	g := l.gen.Load()
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
	c.serve(s.ctx, g.policy, pl)
}
