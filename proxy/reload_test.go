package proxy

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	proxyproto "github.com/pires/go-proxyproto"

	"github.com/attlsd/attlsd/policy"
)

// namedBackend answers every connection with its name and a newline
// after the PROXY header, then echoes.
func namedBackend(t *testing.T, name string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				if _, err := proxyproto.Read(r); err != nil {
					return
				}
				io.WriteString(c, name+"\n")
				io.Copy(c, r)
			}()
		}
	}()
	return ln.Addr().String()
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// parsePolicy loads an inbound policy text against the dev PKI.
func parsePolicy(t *testing.T, src string) *policy.Policy {
	t.Helper()
	dir, err := devPKI()
	if err != nil {
		t.Fatal(err)
	}
	p, diags := policy.Parse([]byte(src), "test.hcl", dir)
	if diags.HasErrors() {
		t.Fatalf("policy: %s", policy.FormatDiagnostics(diags))
	}
	return p
}

// inboundPolicy is one environment and an inbound rule per port, each
// to its backend.
func inboundPolicy(t *testing.T, alpn string, rules map[int]string) *policy.Policy {
	var b strings.Builder
	fmt.Fprintf(&b, `environment "web" {
  certificate = "server.pem"
  private_key = "server-key.pem"
  alpn        = [%q]
}
`, alpn)
	for port, backend := range rules {
		fmt.Fprintf(&b, `inbound "r%d" {
  port        = %d
  address     = "127.0.0.1"
  environment = "web"
  backend     = %q
}
`, port, port, backend)
	}
	return parsePolicy(t, b.String())
}

// reloadClient trusts the dev CA and offers no ALPN.
func reloadClient(t *testing.T) *tls.Config {
	cfg := clientConfig(t, false)
	cfg.NextProtos = nil
	return cfg
}

// hello connects over TLS and returns the backend's name line and the
// connection, which the caller closes.
func hello(t *testing.T, addr string, cfg *tls.Config) (string, *tls.Conn) {
	t.Helper()
	c, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("read from %s: %v", addr, err)
	}
	c.SetDeadline(time.Time{})
	return strings.TrimSpace(line), c
}

func TestApplySwapsRulesKeepsConnections(t *testing.T) {
	one, two := namedBackend(t, "one"), namedBackend(t, "two")
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	s, _ := startServerWith(t, inboundPolicy(t, "a", map[int]string{port: one}))
	cfg := reloadClient(t)

	name, old := hello(t, addr, cfg)
	defer old.Close()
	if name != "one" {
		t.Fatalf("before reload: reached %q, want one", name)
	}

	gen, err := s.Apply(inboundPolicy(t, "a", map[int]string{port: two}))
	if err != nil || gen != 2 {
		t.Fatalf("Apply: generation %d, %v; want 2, nil", gen, err)
	}
	if name, c := hello(t, addr, cfg); name != "two" {
		t.Errorf("after reload: reached %q, want two", name)
	} else {
		c.Close()
	}

	// The connection opened before the reload still reaches backend one.
	old.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(old, "still here")
	buf := make([]byte, len("still here"))
	if _, err := io.ReadFull(old, buf); err != nil || string(buf) != "still here" {
		t.Errorf("old connection after reload: %q, %v", buf, err)
	}
}

func TestApplyAddsAndRemovesListeners(t *testing.T) {
	be := namedBackend(t, "be")
	p1, p2 := freePort(t), freePort(t)
	s, _ := startServerWith(t, inboundPolicy(t, "a", map[int]string{p1: be}))
	cfg := reloadClient(t)

	if _, err := s.Apply(inboundPolicy(t, "a", map[int]string{p2: be})); err != nil {
		t.Fatal(err)
	}
	if _, c := hello(t, fmt.Sprintf("127.0.0.1:%d", p2), cfg); c != nil {
		c.Close()
	}
	if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", p1), time.Second); err == nil {
		c.Close()
		t.Errorf("removed port %d still accepts", p1)
	}
	if got := s.Addrs(); len(got) != 1 || !strings.HasSuffix(got[0], fmt.Sprint(p2)) {
		t.Errorf("Addrs after reload: %v, want only port %d", got, p2)
	}
}

func TestApplyBindFailureChangesNothing(t *testing.T) {
	be := namedBackend(t, "be")
	p1 := freePort(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	p2 := taken.Addr().(*net.TCPAddr).Port
	s, _ := startServerWith(t, inboundPolicy(t, "a", map[int]string{p1: be}))

	_, err = s.Apply(inboundPolicy(t, "b", map[int]string{p1: be, p2: be}))
	if err == nil || !strings.Contains(err.Error(), fmt.Sprint(p2)) {
		t.Fatalf("Apply with a taken port: %v, want an error naming %d", err, p2)
	}
	if gen, p := s.Generation(); gen != 1 || p.Environments[0].ALPN[0] != "a" {
		t.Errorf("after a failed Apply: generation %d, want 1 and the old policy", gen)
	}
	if _, c := hello(t, fmt.Sprintf("127.0.0.1:%d", p1), reloadClient(t)); c != nil {
		c.Close()
	}
}

// TestApplyRefusesNoConnection connects in a loop while policies are
// applied back to back: the kept listener never refuses.
func TestApplyRefusesNoConnection(t *testing.T) {
	be := namedBackend(t, "be")
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	s, _ := startServerWith(t, inboundPolicy(t, "a", map[int]string{port: be}))
	cfg := reloadClient(t)

	var stop atomic.Bool
	var wg sync.WaitGroup
	var ok, failed atomic.Int64
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				c, err := tls.Dial("tcp", addr, cfg)
				if err != nil {
					failed.Add(1)
					t.Errorf("dial during reloads: %v", err)
					return
				}
				line, err := bufio.NewReader(c).ReadString('\n')
				c.Close()
				if err != nil || line != "be\n" {
					failed.Add(1)
					t.Errorf("during reloads: got %q, %v", line, err)
					return
				}
				ok.Add(1)
			}
		}()
	}
	for i := range 50 {
		if _, err := s.Apply(inboundPolicy(t, fmt.Sprint("p", i%2), map[int]string{port: be})); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Millisecond)
	}
	stop.Store(true)
	wg.Wait()
	if ok.Load() == 0 || failed.Load() != 0 {
		t.Errorf("connections during 50 reloads: %d ok, %d failed", ok.Load(), failed.Load())
	}
}

// TestApplyKeepsSessionTickets: a reload that leaves a rule unchanged
// keeps its ticket keys, so a client resumes; one that changes its
// environment does not let a client resume into the new settings.
func TestApplyKeepsSessionTickets(t *testing.T) {
	be := namedBackend(t, "be")
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	s, _ := startServerWith(t, inboundPolicy(t, "a", map[int]string{port: be}))
	cfg := reloadClient(t)
	cfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)

	resumed := func() bool {
		_, c := hello(t, addr, cfg) // the ticket arrives with the first read
		defer c.Close()
		return c.ConnectionState().DidResume
	}
	resumed()
	if !resumed() {
		t.Fatal("no resumption without a reload")
	}
	if _, err := s.Apply(inboundPolicy(t, "a", map[int]string{port: be})); err != nil {
		t.Fatal(err)
	}
	if !resumed() {
		t.Error("unchanged rule: no resumption across the reload")
	}
	if _, err := s.Apply(inboundPolicy(t, "b", map[int]string{port: be})); err != nil {
		t.Fatal(err)
	}
	if resumed() {
		t.Error("changed environment: the client resumed a session of the old settings")
	}
}

// TestApplyMovesPortBetweenAddresses: all addresses to one address on
// the same port, and back, in single reloads.
func TestApplyMovesPortBetweenAddresses(t *testing.T) {
	be := namedBackend(t, "be")
	port := freePort(t)
	text := func(address string) string {
		return fmt.Sprintf(`environment "web" {
  certificate = "server.pem"
  private_key = "server-key.pem"
}
inbound "api" {
  port        = %d
  %s
  environment = "web"
  backend     = %q
}
`, port, address, be)
	}
	s, _ := startServerWith(t, parsePolicy(t, text("")))
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	for _, a := range []string{`address = "127.0.0.1"`, ""} {
		if _, err := s.Apply(parsePolicy(t, text(a))); err != nil {
			t.Fatalf("Apply %q: %v", a, err)
		}
		if _, c := hello(t, addr, reloadClient(t)); c != nil {
			c.Close()
		}
	}
	if got := s.Addrs(); len(got) != 1 || !strings.HasPrefix(got[0], "[::]") {
		t.Errorf("Addrs: %v, want the all-addresses listener only", got)
	}
}
