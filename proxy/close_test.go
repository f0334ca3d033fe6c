package proxy

import (
	"crypto/tls"
	"maps"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/attlsd/attlsd/policy"
)

// stuckBackend accepts connections and never reads from them, as a
// backend that hangs does. release closes them; so does the test's end.
func stuckBackend(t *testing.T) (addr string, release func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var held []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	release = func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	}
	t.Cleanup(release)
	return ln.Addr().String(), release
}

// flood writes to c until a write fails.
func flood(c net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		if _, err := c.Write(buf); err != nil {
			return
		}
	}
}

// waitStalled waits until the server's byte counts stop growing: the
// relay is then blocked writing to a backend that does not read.
func waitStalled(t *testing.T, s *Server) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	last, still := int64(-1), 0
	for still < 5 {
		if time.Now().After(deadline) {
			t.Fatal("the relay never stalled")
		}
		time.Sleep(50 * time.Millisecond)
		var n int64
		for _, c := range s.Connections() {
			n += c.BytesIn
		}
		if n > 0 && n == last {
			still++
		} else {
			last, still = n, 0
		}
	}
}

// TestCloseReachesStuckBackend: Close ends a relay that is blocked
// writing to a backend that has stopped reading, not only the client.
func TestCloseReachesStuckBackend(t *testing.T) {
	addr, release := stuckBackend(t)
	rule := tlsRule(t, addr, policy.ClientAuthNone)
	s, _ := startServer(t, rule)
	cfg := clientConfig(t, false)
	cfg.NextProtos = nil
	c, err := tls.Dial("tcp", s.Addrs()[0], cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	go flood(c)
	waitStalled(t, s)

	closed := make(chan struct{})
	go func() {
		s.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		release() // lets Close return, so the test can end
		<-closed
		t.Fatal("Close still waiting for a relay blocked on its backend")
	}
}

// TestRuleStatsForgetRemovedRules: a rule that a reload removed is
// reported while it has an open connection, and forgotten after; every
// rule of the current policy is reported, with or without connections.
func TestRuleStatsForgetRemovedRules(t *testing.T) {
	be := startBackend(t)
	old := tlsRule(t, be.ln.Addr().String(), policy.ClientAuthNone)
	old.Name = "old"
	s, logs := startServer(t, old)
	addr := s.Addrs()[0]
	cfg := clientConfig(t, false)
	cfg.NextProtos = nil
	c, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	echoByte(t, c)

	next := tlsRule(t, be.ln.Addr().String(), policy.ClientAuthNone)
	next.Name = "new"
	pl := &policy.Listener{Addr: "127.0.0.1:0", Rules: []*policy.Rule{next}}
	if _, err := s.Apply(&policy.Policy{Inbound: pl.Rules, Listeners: []*policy.Listener{pl}}); err != nil {
		t.Fatal(err)
	}
	if got, want := activeByRule(s), map[string]int{"old": 1, "new": 0}; !maps.Equal(got, want) {
		t.Errorf("with old's connection open: got %v, want %v", got, want)
	}
	c.Close()
	logs.closeLine(t)
	if got, want := activeByRule(s), map[string]int{"new": 0}; !maps.Equal(got, want) {
		t.Errorf("after old's last connection: got %v, want %v", got, want)
	}
}

// echoByte sends one byte through the echo backend and reads it back.
func echoByte(t *testing.T, c *tls.Conn) {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
}

// activeByRule returns the open connections of every rule reported.
func activeByRule(s *Server) map[string]int {
	out := map[string]int{}
	for _, st := range s.RuleStats() {
		out[st.Rule] = st.Active
	}
	return out
}
