package proxy

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/attlsd/attlsd/certs"
	"github.com/attlsd/attlsd/internal/testnet"
	"github.com/attlsd/attlsd/policy"
)

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
	one, two := testnet.NamedBackend(t, "one"), testnet.NamedBackend(t, "two")
	port := testnet.FreePort(t)
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
	be := testnet.NamedBackend(t, "be")
	p1, p2 := testnet.FreePort(t), testnet.FreePort(t)
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

// ruleText is an inbound rule named after its port in environment
// "web"; address "" listens on all addresses.
func ruleText(port int, address, backend string) string {
	if address != "" {
		address = fmt.Sprintf("address = %q", address)
	}
	return fmt.Sprintf(`inbound "r%d" {
  port        = %d
  %s
  environment = "web"
  backend     = %q
}
`, port, port, address, backend)
}

const webEnvironment = `environment "web" {
  certificate = "server.pem"
  private_key = "server-key.pem"
}
`

// TestApplyBindFailureChangesNothing adds a port another process holds:
// Apply fails with the position of that port in the policy, and the
// running listeners keep their sockets, also one on a port whose address
// the same reload moves.
func TestApplyBindFailureChangesNothing(t *testing.T) {
	be := testnet.NamedBackend(t, "be")
	tests := []struct {
		name             string
		oldAddr, newAddr string // of the kept rule's port
	}{
		{"beside a kept port", "127.0.0.1", "127.0.0.1"},
		{"beside a port that moves to one address", "", "127.0.0.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			port := testnet.FreePort(t)
			held, heldPort := holdPortAfter(t, port)
			defer held.Close()
			s, _ := startServerWith(t, parsePolicy(t, webEnvironment+ruleText(port, tt.oldAddr, be)))
			oldKey := fmt.Sprintf("%s:%d", tt.oldAddr, port)
			before := s.listeners[oldKey]

			text := webEnvironment + ruleText(port, tt.newAddr, be) + ruleText(heldPort, "127.0.0.1", be)
			_, err := s.Apply(parsePolicy(t, text))
			var bindErr *BindError
			if !errors.As(err, &bindErr) || bindErr.Listener.Port != uint16(heldPort) {
				t.Fatalf("Apply with a held port: got %v, want a BindError for port %d", err, heldPort)
			}
			want := fmt.Sprintf("test.hcl:%d:17: listen on 127.0.0.1:%d", lineOf(text, heldPort), heldPort)
			if !strings.HasPrefix(err.Error(), want) {
				t.Errorf("error: got %q, want it to start with %q", err, want)
			}
			if gen, _ := s.Generation(); gen != 1 {
				t.Errorf("after a failed Apply: generation %d, want 1", gen)
			}
			if after := s.listeners[oldKey]; after != before {
				t.Errorf("listener %s: its socket was closed and bound again", oldKey)
			}
			if name, c := hello(t, fmt.Sprintf("127.0.0.1:%d", port), reloadClient(t)); name != "be" {
				t.Errorf("running listener after a failed Apply: reached %q, want be", name)
			} else {
				c.Close()
			}
		})
	}
}

// holdPortAfter listens on a loopback port whose address sorts after
// port's, so that binding in address order would reach it last.
func holdPortAfter(t *testing.T, port int) (net.Listener, int) {
	t.Helper()
	for {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		held := ln.Addr().(*net.TCPAddr).Port
		if fmt.Sprint(held) > fmt.Sprint(port) {
			return ln, held
		}
		defer ln.Close()
	}
}

// lineOf returns the 1-based line of text that sets port.
func lineOf(text string, port int) int {
	for i, l := range strings.Split(text, "\n") {
		if strings.TrimSpace(l) == fmt.Sprintf("port        = %d", port) {
			return i + 1
		}
	}
	return 0
}

// TestServeOnRemovedListener: a connection accepted on a listener in the
// moment after a reload removed it, before its socket closed, is served
// under the generation the listener last belonged to.
func TestServeOnRemovedListener(t *testing.T) {
	be := testnet.NamedBackend(t, "be")
	p1, p2 := testnet.FreePort(t), testnet.FreePort(t)
	s, logs := startServerWith(t, inboundPolicy(t, "a", map[int]string{p1: be}))
	removed := s.listeners[fmt.Sprintf("127.0.0.1:%d", p1)]
	if _, err := s.Apply(inboundPolicy(t, "a", map[int]string{p2: be})); err != nil {
		t.Fatal(err)
	}

	// Stand in for an Accept that returned on the removed listener just
	// before its socket closed.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		raw, err := ln.Accept()
		if err != nil {
			return
		}
		s.wg.Add(1)
		s.serve(removed, raw)
	}()
	name, c := hello(t, ln.Addr().String(), reloadClient(t))
	c.Close()
	if name != "be" {
		t.Errorf("connection on the removed listener: reached %q, want be", name)
	}
	if l := logs.closeLine(t); l["generation"] != 1.0 || l["rule"] != fmt.Sprintf("r%d", p1) {
		t.Errorf("close line: got generation %v, rule %v; want 1, r%d", l["generation"], l["rule"], p1)
	}
}

// TestApplyRefusesNoConnection connects in a loop while policies are
// applied back to back: the kept listener never refuses.
func TestApplyRefusesNoConnection(t *testing.T) {
	be := testnet.NamedBackend(t, "be")
	port := testnet.FreePort(t)
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

// otherPair is a second server certificate and key, of its own CA, in
// the dev PKI folder: other/server.pem and other/server-key.pem.
var otherPair = sync.OnceValue(func() error {
	dir, err := devPKI()
	if err != nil {
		return err
	}
	_, err = certs.InitDev(filepath.Join(dir, "other"), nil, time.Now())
	return err
})

// ticketPolicy is one inbound rule on port to backend, in an environment
// with the given certificate (a file name prefix in the dev PKI folder)
// and trust bundle.
func ticketPolicy(t *testing.T, port int, backend, cert, trust string) *policy.Policy {
	t.Helper()
	if err := otherPair(); err != nil {
		t.Fatal(err)
	}
	return parsePolicy(t, fmt.Sprintf(`environment "web" {
  certificate = "%[1]sserver.pem"
  private_key = "%[1]sserver-key.pem"
  trust       = [%[2]q]
}
inbound "api" {
  port        = %[3]d
  address     = "127.0.0.1"
  environment = "web"
  backend     = %[4]q
}
`, cert, trust, port, backend))
}

// TestApplyKeepsSessionTickets: a client resumes its TLS session across
// a reload that left the environment alone, even when the rule changed
// otherwise; it does not resume into a changed certificate or trust.
func TestApplyKeepsSessionTickets(t *testing.T) {
	one, two := testnet.NamedBackend(t, "one"), testnet.NamedBackend(t, "two")
	tests := []struct {
		name                   string
		backend, cert, trust   string
		wantResume, wantServer string
	}{
		{"unchanged", one, "", "ca.pem", "yes", "one"},
		{"backend only", two, "", "ca.pem", "yes", "two"},
		{"certificate", one, "other/", "ca.pem", "no", "one"},
		{"trust bundle", one, "", "other/ca.pem", "no", "one"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			port := testnet.FreePort(t)
			addr := fmt.Sprintf("127.0.0.1:%d", port)
			s, _ := startServerWith(t, ticketPolicy(t, port, one, "", "ca.pem"))
			cfg := reloadClient(t)
			cfg.InsecureSkipVerify = true // the certificate case changes CA
			cfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)
			resumed := func() (string, string) {
				name, c := hello(t, addr, cfg) // the ticket arrives with the first read
				defer c.Close()
				if c.ConnectionState().DidResume {
					return "yes", name
				}
				return "no", name
			}
			resumed()
			if got, _ := resumed(); got != "yes" {
				t.Fatalf("resumed without a reload: got %s, want yes", got)
			}
			p := ticketPolicy(t, port, tt.backend, tt.cert, tt.trust)
			if _, err := s.Apply(p); err != nil {
				t.Fatal(err)
			}
			if got, name := resumed(); got != tt.wantResume || name != tt.wantServer {
				t.Errorf("after the reload: resumed %s at backend %s, want %s at %s",
					got, name, tt.wantResume, tt.wantServer)
			}
		})
	}
}

// TestApplyMovesPortBetweenAddresses: all addresses to one address on
// the same port, and back, in single reloads.
func TestApplyMovesPortBetweenAddresses(t *testing.T) {
	be := testnet.NamedBackend(t, "be")
	port := testnet.FreePort(t)
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
