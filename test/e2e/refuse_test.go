package e2e

import (
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestBadClients sends what is not a TLS handshake to a TLS port: binary
// garbage, garbage that starts like a TLS handshake record, a ClientHello
// too short to parse, plain HTTP from curl, nothing at all, and a
// ClientHello that trickles in too slowly. Each connection is closed and logged with its
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
		{"TLS-shaped-garbage", func(t *testing.T) string {
			c := dialTCP(t, addr)
			c.Write([]byte("\x16\x03\x01\x00\x05hello"))
			waitClosed(t, c)
			return c.LocalAddr().String()
		}, 5003, "cleartext or garbage on a TLS port: ", false},
		{"malformed-ClientHello", func(t *testing.T) string {
			c := dialTCP(t, addr)
			c.Write([]byte("\x16\x03\x01\x00\x05\x01\x00\x00\x01X"))
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

// TestDeadBackend points a rule at backends that fail: nothing listens
// (over TCP and on a UNIX socket), or the backend does not answer at all
// (its accept queue is full, so the kernel drops the SYN) within the
// rule's connect_timeout. Each client sends its request at once and must
// see its connection end in order, never reset: curl over HTTP/1.1 gets
// an empty reply, and Python's ssl module sees attlsd's close_notify. The
// log line is an error that names the backend and what went wrong.
func TestDeadBackend(t *testing.T) {
	needTool(t, "curl", "curl")
	python := needTool(t, "python3", "python3")
	tests := []struct {
		name      string
		backend   func(t *testing.T) string
		ruleAttrs []string
		reason    string // {backend} stands for the backend's address
	}{
		{"tcp-refused", closedEndpoint, nil,
			"dial {backend}: dial tcp {backend}: connect: connection refused"},
		{"unix-missing", func(t *testing.T) string {
			return "unix:" + filepath.Join(t.TempDir(), "nobody-home.sock")
		}, nil, "dial {backend}: dial unix "},
		{"tcp-unanswering", unansweringBackend, []string{`connect_timeout = "1s"`},
			"dial {backend}: no answer within 1s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			backend := tt.backend(t)
			d := simpleDaemon(t, backend, nil, tt.ruleAttrs)
			addr := d.addr("127.0.0.1", 0)
			want := strings.ReplaceAll(tt.reason, "{backend}", backend)
			checkLine := func(t *testing.T, client string) {
				t.Helper()
				line := d.closeLine(t, client)
				checkCloseLine(t, line, map[string]string{"level": "error", "backend": backend,
					"rule": "e2e"})
				if !strings.HasPrefix(line.str("reason"), want) {
					t.Errorf("close line reason: got %q, want %q...", line.str("reason"), want)
				}
			}

			t.Run("curl", func(t *testing.T) {
				url, resolve := httpsURL(addr)
				res := curl(t, url, append(resolve, "--http1.1")...)
				if res.code != 52 || strings.Contains(strings.ToLower(res.stderr), "reset") {
					t.Errorf("curl: got exit %d, stderr %q; want 52 (empty reply) and no reset",
						res.code, res.stderr)
				}
				checkLine(t, res.local)
			})
			t.Run("python", func(t *testing.T) {
				ended, local := pythonRequest(t, python, addr)
				if ended != "close_notify" {
					t.Errorf("python client: connection ended by %s, want close_notify", ended)
				}
				checkLine(t, local)
			})
		})
	}
}

// pythonEnding is a Python ssl client that sends an HTTP request and
// reads until the connection ends, then prints how it ended and its own
// address. Ragged EOFs are not suppressed, so an end without close_notify
// raises SSLEOFError instead of reading as an empty string.
const pythonEnding = `
import socket, ssl, sys

host, port, cafile = sys.argv[1:4]
ctx = ssl.create_default_context(cafile=cafile)
sock = socket.create_connection((host, int(port)), timeout=20)
local = "%s:%d" % sock.getsockname()[:2]
tls = ctx.wrap_socket(sock, server_hostname="localhost", suppress_ragged_eofs=False)
tls.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
try:
    while tls.recv(65536):
        pass
    ended = "close_notify"
except ssl.SSLZeroReturnError:
    ended = "close_notify"
except ssl.SSLEOFError:
    ended = "eof-without-close_notify"
except ConnectionResetError:
    ended = "reset"
except Exception as e:
    ended = type(e).__name__
print(ended, local)
`

// pythonRequest runs pythonEnding against addr and returns how the
// connection ended and the client's address.
func pythonRequest(t *testing.T, python, addr string) (ended, local string) {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	out, errOut, code := run(t, "", python, "-c", pythonEnding, host, port, caFile())
	ended, local, ok := strings.Cut(strings.TrimSpace(out), " ")
	if code != 0 || !ok {
		t.Fatalf("python client: exit %d, output %q\n%s", code, out, errOut)
	}
	return ended, local
}

// unansweringBackend returns a 127.0.0.1 address whose listener answers
// no new connection: its accept queue, of length zero, already holds one
// connection that is never accepted, so the kernel drops every further
// SYN and a dial waits until its timeout.
func unansweringBackend(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "unanswering backend")
	t.Cleanup(func() { f.Close() })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + itoa(sa.(*syscall.SockaddrInet4).Port)
	for range 5 {
		c, err := net.DialTimeout("tcp", addr, 300*time.Millisecond)
		if err != nil {
			return addr // the queue is full
		}
		t.Cleanup(func() { c.Close() })
	}
	t.Fatalf("%s still answers after 5 connections; want its accept queue full", addr)
	return ""
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
