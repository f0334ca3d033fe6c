package e2e

import (
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestBadClients sends what is not a TLS handshake to a TLS port: binary
// garbage, plain HTTP from curl, nothing at all, and a ClientHello that
// trickles in too slowly. Each connection is closed and logged with its
// AT-TLS code (5003 cleartext, 5004 timeout) at the right time, never
// reaches the backend, and the daemon goes on serving good clients.
func TestBadClients(t *testing.T) {
	needTool(t, "curl", "curl")
	const timeout = time.Second
	b := startBackend(t, answerHTTP("ok\n"))
	d := simpleDaemon(t, b.addr, []string{`handshake_timeout = "1s"`}, nil)
	addr := d.addr("127.0.0.1", 0)

	tests := []struct {
		name string
		// client misbehaves and returns its own address once attlsd has
		// closed the connection.
		client     func(t *testing.T) string
		wantCode   float64
		wantReason string
		// wantSlow: the close comes at the handshake timeout, not at once.
		wantSlow bool
	}{
		{"garbage", func(t *testing.T) string {
			c := dialTCP(t, addr)
			c.Write([]byte("\x00\xff\x13\x37 this is not TLS \x01\x02\x03\r\n"))
			waitClosed(t, c)
			return c.LocalAddr().String()
		}, 5003, "cleartext or garbage on a TLS port: ", false},
		{"plain-HTTP-curl", func(t *testing.T) string {
			res := curl(t, "http://"+addr+"/")
			if res.code == 0 {
				t.Errorf("curl http:// to a TLS port: got success, want failure")
			}
			return res.local
		}, 5003, "cleartext or garbage on a TLS port: ", false},
		{"silent", func(t *testing.T) string {
			c := dialTCP(t, addr)
			waitClosed(t, c)
			return c.LocalAddr().String()
		}, 5004, "handshake timed out: ", true},
		{"trickle", func(t *testing.T) string {
			c := dialTCP(t, addr)
			go trickle(c, 100*time.Millisecond)
			waitClosed(t, c)
			return c.LocalAddr().String()
		}, 5004, "handshake timed out: ", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := b.accepted.Load()
			start := time.Now()
			client := tt.client(t)
			elapsed := time.Since(start)
			line := d.closeLine(t, client)

			if line.num("code") != tt.wantCode || line.str("level") != "warn" ||
				!strings.HasPrefix(line.str("reason"), tt.wantReason) {
				t.Errorf("close line: got level %q, code %v, reason %q; want warn, %v, %q...",
					line.str("level"), line.num("code"), line.str("reason"), tt.wantCode, tt.wantReason)
			}
			early, late := timeout-100*time.Millisecond, timeout+1500*time.Millisecond
			switch {
			case tt.wantSlow && (elapsed < early || elapsed > late):
				t.Errorf("closed after %s, want about %s (handshake_timeout)", elapsed, timeout)
			case !tt.wantSlow && elapsed > timeout/2:
				t.Errorf("closed after %s, want at once (well before the %s timeout)", elapsed, timeout)
			}
			if n := b.accepted.Load() - before; n != 0 {
				t.Errorf("backend connections for a bad client: got %d, want 0", n)
			}

			// The daemon still serves.
			url, resolve := httpsURL(addr)
			if res := curl(t, url, resolve...); res.code != 0 || res.body != "ok\n" {
				t.Errorf("good curl after a bad client: got exit %d, body %q; want 0, %q\n%s",
					res.code, res.body, "ok\n", res.stderr)
			}
		})
	}
}

// waitClosed reads from c until attlsd closes it, bounded by ioTimeout.
func waitClosed(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(ioTimeout))
	_, err := io.Copy(io.Discard, c)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("connection still open after %s", ioTimeout)
	}
}

// trickle sends the start of a TLS ClientHello one byte per interval, as
// a slowloris client would, until the connection breaks. The record claims
// 512 bytes, so it cannot complete within the test.
func trickle(c net.Conn, interval time.Duration) {
	hello := append([]byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03},
		make([]byte, 100)...)
	for _, b := range hello {
		if _, err := c.Write([]byte{b}); err != nil {
			return
		}
		time.Sleep(interval)
	}
}

// TestDeadBackend points a rule at a backend where nothing listens, over
// TCP and over a UNIX socket. curl's connection is closed at once, and
// attlsd logs an error that names the backend.
func TestDeadBackend(t *testing.T) {
	needTool(t, "curl", "curl")
	tests := []struct {
		name    string
		backend string
	}{
		{"tcp", "127.0.0.1:" + itoa(freePorts(t, "127.0.0.1", 1)[0])},
		{"unix", "unix:" + filepath.Join(t.TempDir(), "nobody-home.sock")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := simpleDaemon(t, tt.backend, nil, nil)
			url, resolve := httpsURL(d.addr("127.0.0.1", 0))
			start := time.Now()
			res := curl(t, url, resolve...)
			if res.code == 0 || res.code == 28 || time.Since(start) > 5*time.Second {
				t.Errorf("curl: got exit %d after %s; want a failure (not a timeout) at once\n%s",
					res.code, time.Since(start), res.stderr)
			}
			line := d.closeLine(t, res.local)
			checkCloseLine(t, line, map[string]string{"level": "error", "backend": tt.backend, "rule": "e2e"})
			if want := "dial " + tt.backend + ": "; !strings.HasPrefix(line.str("reason"), want) {
				t.Errorf("close line reason: got %q, want %q...", line.str("reason"), want)
			}
		})
	}
}

// TestRuleMatch checks that a connection goes to the first rule of its
// port in AT-TLS order (priority high to low, ties by name) whose
// conditions take it, and that a connection no rule takes is refused
// rather than passed through.
func TestRuleMatch(t *testing.T) {
	ruleOf := func(bc *backendConn) {
		rule, _ := bc.tlv(0xE1)
		answerHTTP(rule)(bc)
	}
	b := startBackend(t, ruleOf)
	tests := []struct {
		name  string
		rules func(port int) string
		want  string // rule name the backend reports; "" means refused
	}{
		{"no-rule-takes-loopback", func(p int) string {
			return inbound("only-10net", p, b.addr, `remote_addresses = ["10.0.0.0/8"]`)
		}, ""},
		// A rule that every client of another, earlier rule would reach
		// is an error in a policy, so the rules below differ in what they
		// take and all of them take 127.0.0.1.
		{"higher-priority-wins", func(p int) string {
			return inbound("low-any", p, b.addr, "priority = 100") +
				inbound("high-loopback", p, b.addr, "priority = 200", `remote_addresses = ["127.0.0.0/8"]`)
		}, "high-loopback"},
		{"condition-skips-rule", func(p int) string {
			return inbound("high-10net", p, b.addr, "priority = 200", `remote_addresses = ["10.0.0.0/8"]`) +
				inbound("low-loopback", p, b.addr, "priority = 100", `remote_addresses = ["127.0.0.0/8"]`)
		}, "low-loopback"},
		{"tie-by-name", func(p int) string {
			return inbound("beta", p, b.addr, "priority = 100", `remote_addresses = ["127.0.0.0/8", "10.0.0.0/8"]`) +
				inbound("alpha", p, b.addr, "priority = 100", `remote_addresses = ["127.0.0.0/8"]`) +
				inbound("omega", p, b.addr, "priority = 50")
		}, "alpha"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			needTool(t, "curl", "curl")
			d := startDaemon(t, "127.0.0.1", 1, func(p []int) string {
				return environment() + tt.rules(p[0])
			})
			before := b.accepted.Load()
			url, resolve := httpsURL(d.addr("127.0.0.1", 0))
			res := curl(t, url, resolve...)
			line := d.closeLine(t, res.local)

			if tt.want == "" {
				if res.code == 0 {
					t.Errorf("curl: got success, want the connection refused")
				}
				checkCloseLine(t, line, map[string]string{"level": "warn",
					"reason": "no rule takes this client", "rule": ""})
				if n := b.accepted.Load() - before; n != 0 {
					t.Errorf("backend connections: got %d, want 0", n)
				}
				return
			}
			if res.code != 0 || res.body != tt.want {
				t.Errorf("curl: got exit %d, rule %q; want 0, %q\n%s", res.code, res.body, tt.want, res.stderr)
			}
			checkCloseLine(t, line, map[string]string{"rule": tt.want})
		})
	}
}

// TestResets cuts an established connection with a TCP reset, from the
// client and from the backend. The other side must see the connection
// end at once, and attlsd logs the close as an ordinary ending (info),
// since resets are routine on a network, not something to act on.
func TestResets(t *testing.T) {
	tests := []struct {
		name        string
		clientReset bool
	}{
		{"client-resets", true},
		{"backend-resets", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ended := make(chan error, 1)
			b := startBackend(t, func(bc *backendConn) {
				buf := make([]byte, 5)
				if _, err := io.ReadFull(bc, buf); err != nil {
					offer(ended, err)
					return
				}
				bc.Write([]byte("ready"))
				if !tt.clientReset {
					// Reset only once the client has read "ready" and
					// answered, so the reset cannot discard "ready".
					io.ReadFull(bc, buf)
					bc.SetLinger(0)
					bc.Close()
					return
				}
				_, err := io.Copy(io.Discard, bc)
				offer(ended, err)
			})
			d := simpleDaemon(t, b.addr, nil, nil)

			c := dialTLS(t, d.addr("127.0.0.1", 0), clientTLS(t))
			c.Write([]byte("hello"))
			if _, err := io.ReadFull(c, make([]byte, 5)); err != nil {
				t.Fatalf("client read: %v", err)
			}
			if tt.clientReset {
				tcp := c.NetConn().(*net.TCPConn)
				tcp.SetLinger(0)
				tcp.Close()
				if err := receive(t, ended, "backend end of stream"); err != nil && !errIsClosed(err) {
					t.Errorf("backend read after the client's reset: got %v, want the stream ended", err)
				}
			} else {
				c.Write([]byte("later"))
				if _, err := io.Copy(io.Discard, c); err != nil && !errIsClosed(err) {
					t.Errorf("client read after the backend's reset: got %v, want the stream ended", err)
				}
			}
			line := d.closeLine(t, c.LocalAddr().String())
			if line.str("level") != "info" {
				t.Errorf("close line level: got %q, want info\nline: %s", line.str("level"), line)
			}
		})
	}
}

// TestTLSVersionPolicy narrows an environment to TLS 1.3: curl limited to
// TLS 1.2 is refused during the handshake, before any backend connection,
// and TLS 1.3 still works.
func TestTLSVersionPolicy(t *testing.T) {
	needTool(t, "curl", "curl")
	b := startBackend(t, answerHTTP("ok\n"))
	d := simpleDaemon(t, b.addr, []string{`tls_versions = ["1.3"]`}, nil)
	url, resolve := httpsURL(d.addr("127.0.0.1", 0))

	res := curl(t, url, append(resolve, "--tlsv1.2", "--tls-max", "1.2")...)
	if res.code == 0 {
		t.Errorf("curl with TLS 1.2 at most: got success, want the handshake refused")
	}
	line := d.closeLine(t, res.local)
	if line.str("level") != "warn" || !strings.HasPrefix(line.str("reason"), "handshake failed") {
		t.Errorf("close line: got level %q, reason %q; want warn, \"handshake failed...\"",
			line.str("level"), line.str("reason"))
	}
	if n := b.accepted.Load(); n != 0 {
		t.Errorf("backend connections: got %d, want 0", n)
	}

	if res := curl(t, url, append(resolve, "--tlsv1.3")...); res.code != 0 || res.body != "ok\n" {
		t.Errorf("curl with TLS 1.3: got exit %d, body %q; want 0, %q\n%s", res.code, res.body, "ok\n", res.stderr)
	}
}
