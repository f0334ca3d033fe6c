package proxy

import (
	"crypto/tls"
	"errors"
	"io"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/attlsd/attlsd/policy"
)

// The timeouts here are short for the test's sake; the checks are about
// which connections end and why, never about how long something took.

func TestIdleTimeoutEndsSilentRelay(t *testing.T) {
	client, _, done := relayedWith(t, &timeouts{idle: 100 * time.Millisecond})
	var se *silenceError
	select {
	case err := <-done:
		if !errors.As(err, &se) || se.what != "idle timeout" {
			t.Fatalf("relay ended with %v, want an idle timeout", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a silent relay outlived its idle timeout")
	}
	client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := client.Read(make([]byte, 1)); err == nil {
		t.Error("client still open after the idle timeout")
	}
}

// TestIdleTimeoutCountsBothWays: bytes in one direction keep the other,
// silent, direction alive.
func TestIdleTimeoutCountsBothWays(t *testing.T) {
	client, backend, done := relayedWith(t, &timeouts{idle: 150 * time.Millisecond})
	go io.Copy(io.Discard, client)
	for range 12 { // well past several idle periods
		if _, err := backend.Write([]byte("tick")); err != nil {
			t.Fatalf("backend write: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
		select {
		case err := <-done:
			t.Fatalf("relay ended while bytes flowed one way: %v", err)
		default:
		}
	}
}

// TestHalfCloseTimeout: once the client has half-closed, a backend that
// keeps sending is not cut, and one that goes silent is.
func TestHalfCloseTimeout(t *testing.T) {
	client, backend, done := relayedWith(t, &timeouts{halfClose: 150 * time.Millisecond})
	client.Write([]byte("request"))
	client.CloseWrite()
	got := make(chan int64, 1)
	go func() {
		n, _ := io.Copy(io.Discard, client)
		got <- n
	}()
	buf := make([]byte, 7)
	if _, err := io.ReadFull(backend, buf); err != nil {
		t.Fatal(err)
	}
	sent := int64(0)
	for range 10 { // slow but active: well past the timeout in total
		n, err := backend.Write([]byte("chunk"))
		if err != nil {
			t.Fatalf("backend write while active: %v", err)
		}
		sent += int64(n)
		time.Sleep(50 * time.Millisecond)
	}
	var se *silenceError
	select {
	case err := <-done:
		if !errors.As(err, &se) || se.what != "half-close timeout" {
			t.Fatalf("relay ended with %v, want a half-close timeout", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a silent half-closed relay outlived its timeout")
	}
	if n := <-got; n != sent {
		t.Errorf("client got %d bytes, backend sent %d", n, sent)
	}
}

// TestMaxConnections: the rule's (N+1)th connection is refused while N
// are open, and a slot frees when one closes.
func TestMaxConnections(t *testing.T) {
	be := startBackend(t)
	rule := tlsRule(t, be.ln.Addr().String(), policy.ClientAuthNone)
	rule.MaxConnections = 2
	logs := &syncBuffer{}
	pl := &policy.Listener{Addr: "127.0.0.1:0", Rules: []*policy.Rule{rule}}
	s := New(&policy.Policy{Inbound: pl.Rules, Listeners: []*policy.Listener{pl}}, zerolog.New(logs))
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	cfg := clientConfig(t, false)
	cfg.NextProtos = nil

	echoOnce := func(c *tls.Conn) error {
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write([]byte("x")); err != nil {
			return err
		}
		_, err := io.ReadFull(c, make([]byte, 1))
		return err
	}
	var open []*tls.Conn
	for range 2 {
		c, err := tls.Dial("tcp", s.Addrs()[0], cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := echoOnce(c); err != nil {
			t.Fatalf("connection within the limit: %v", err)
		}
		open = append(open, c)
	}
	// The third is refused before its handshake.
	if c, err := tls.Dial("tcp", s.Addrs()[0], cfg); err == nil {
		err = echoOnce(c)
		c.Close()
		if err == nil {
			t.Fatal("third connection over max_connections 2 was served")
		}
	}
	if n := refusedOf(s, rule.Name, "max_connections"); n != 1 {
		t.Errorf("refusals counted for max_connections: got %d, want 1", n)
	}
	// The line is written just after the client's socket closes.
	warned := func() bool {
		for _, l := range logs.lines() {
			if r, _ := l["reason"].(string); strings.Contains(r, "max_connections of 2") && l["level"] == "warn" {
				return true
			}
		}
		return false
	}
	for deadline := time.Now().Add(5 * time.Second); !warned() && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	if !warned() {
		t.Errorf("no warn line naming max_connections")
	}

	open[0].Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := tls.Dial("tcp", s.Addrs()[0], cfg)
		if err == nil {
			err = echoOnce(c)
			c.Close()
		}
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no slot freed after a connection closed: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// refusedOf returns the refusals counted for rule and reason.
func refusedOf(s *Server, rule, reason string) int64 {
	for _, st := range s.RuleStats() {
		if st.Rule == rule {
			return st.Refused[reason]
		}
	}
	return 0
}

// TestSilenceLimitsWhileWritesBlock: a client that sends without end and
// reads nothing, before a backend that echoes, soon blocks both
// directions in a write, where no read deadline fires; and once a client
// has half-closed, the open direction blocks the same way. The silence
// limits must still end the relay.
func TestSilenceLimitsWhileWritesBlock(t *testing.T) {
	tests := []struct {
		name      string
		to        *timeouts
		halfClose bool // the client sends one chunk and its end, not a flood
		want      string
	}{
		{"both directions", &timeouts{idle: 300 * time.Millisecond}, false, "idle timeout"},
		{"half-closed", &timeouts{halfClose: 300 * time.Millisecond}, true, "half-close timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client, backend, done := relayedWith(t, tt.to)
			chunk := make([]byte, 64<<10)
			if tt.halfClose {
				go func() { io.Copy(io.Discard, backend); flood(backend) }()
				client.Write(chunk)
				client.CloseWrite()
			} else {
				go func() { io.Copy(backend, backend) }()
				go flood(client)
			}
			var se *silenceError
			select {
			case err := <-done:
				if !errors.As(err, &se) || se.what != tt.want {
					t.Fatalf("relay ended with %v, want a %s", err, tt.want)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("a relay blocked in its writes outlived its %s", tt.want)
			}
		})
	}
}

// TestWriteTimeoutEndsStalledRelay: a backend that reads nothing while
// the client floods, and a client that reads nothing while the backend
// floods, each end the relay at the write timeout, naming the peer that
// stopped; the cleartext peer sees the cut as a reset.
func TestWriteTimeoutEndsStalledRelay(t *testing.T) {
	tests := []struct {
		name string
		to   string // the peer that stops reading
	}{
		{"backend-stops-reading", "backend"},
		{"client-stops-reading", "client"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client, backend, done := relayedWith(t, &timeouts{write: 200 * time.Millisecond})
			writer, stuck := client, backend
			if tt.to == "client" {
				writer, stuck = backend, client
			}
			go flood(writer)
			var se *stallError
			select {
			case err := <-done:
				if !errors.As(err, &se) || se.to != tt.to {
					t.Fatalf("relay ended with %v, want a write timeout on %s", err, tt.to)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("a relay whose peer stopped reading outlived its write timeout")
			}
			stuck.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.Copy(io.Discard, stuck); !errors.Is(err, syscall.ECONNRESET) {
				t.Errorf("%s read after the cut: got %v, want a reset", tt.to, err)
			}
		})
	}
}

// TestWriteTimeoutSparesQuietRelay: a relay where nobody writes is not a
// stalled one: the write timeout does not end it.
func TestWriteTimeoutSparesQuietRelay(t *testing.T) {
	client, backend, done := relayedWith(t, &timeouts{write: 100 * time.Millisecond})
	roundTrip := func() {
		client.Write([]byte("ping"))
		if _, err := io.ReadFull(backend, make([]byte, 4)); err != nil {
			t.Fatalf("backend read: %v", err)
		}
	}
	roundTrip()
	time.Sleep(500 * time.Millisecond) // five write timeouts of silence
	select {
	case err := <-done:
		t.Fatalf("a quiet relay ended: %v", err)
	default:
	}
	roundTrip()
}
