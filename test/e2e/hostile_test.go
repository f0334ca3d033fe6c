package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
)

// TestBackendFailsMidStream: backends that fail once bytes flow. One
// vanishes (its packets dropped, so no FIN or reset ever comes), one
// resets in the middle of an answer, one stops reading while the client
// floods; and clients that never read what an echoing backend sends
// back, so that attlsd's writes block: both directions' while both are
// open, the open one's once the client has half-closed. In each, attlsd
// closes the client's connection within the rule's idle_timeout or
// half_close_timeout (at once on the reset, and then without
// close_notify), logs why, and keeps no descriptor or goroutine of it.
func TestBackendFailsMidStream(t *testing.T) {
	const idle = 2 * time.Second
	// bound is how long the client waits for its connection to be closed:
	// the idle timeout, and margin for a loaded machine.
	const bound = idle + 10*time.Second
	ruleAttrs := []string{`idle_timeout = "2s"`, `half_close_timeout = "2s"`}

	tests := []struct {
		name    string
		inNetns bool
		// backend is the backend's behaviour once its header is read; ctx
		// ends with the test.
		backend func(ctx context.Context, bc *backendConn)
		// client connects and drives a client, and returns its address
		// once attlsd has closed the connection.
		client     func(t *testing.T, rig *faultRig) string
		wantReason string
	}{
		{"vanishes", true,
			func(ctx context.Context, bc *backendConn) {
				io.CopyN(bc, bc, 5)
				<-ctx.Done()
			},
			func(t *testing.T, rig *faultRig) string {
				c := rig.dialTLS(t)
				roundTrip(t, c, "hello")
				rig.vanish(t)
				io.WriteString(c, "are you there?")
				waitEnd(t, c, bound)
				return c.LocalAddr().String()
			}, "idle timeout: no byte for 2s"},
		{"resets", false,
			func(ctx context.Context, bc *backendConn) {
				if req, err := http.ReadRequest(bufio.NewReader(bc)); err == nil {
					req.Body.Close()
				}
				// An answer whose body ends at the end of the stream, cut.
				bc.Write([]byte("HTTP/1.0 200 OK\r\n\r\nhalf an answ"))
				bc.SetLinger(0)
				bc.Close()
			},
			func(t *testing.T, rig *faultRig) string {
				// Python tells an end with close_notify from one
				// without: close_notify would say that the answer is
				// complete (RFC 8446 6.1), so the client could not see
				// it was cut.
				python := needTool(t, "python3", "python3")
				ended, local := pythonRequest(t, python, rig.addr)
				if ended == "close_notify" {
					t.Errorf("client saw the stream end by close_notify after the backend's reset; " +
						"want an end without it (eof-without-close_notify or reset)")
				}
				return local
			}, "connection reset by peer"},
		{"never-reads", false,
			func(ctx context.Context, bc *backendConn) { <-ctx.Done() },
			func(t *testing.T, rig *faultRig) string {
				c := rig.dialTLS(t)
				go flood(c)
				waitEnd(t, c, bound)
				return c.LocalAddr().String()
			}, "idle timeout: no byte for 2s"},
		{"client-never-reads", false,
			func(ctx context.Context, bc *backendConn) { echo(bc) },
			func(t *testing.T, rig *faultRig) string {
				c := rig.dialTLS(t)
				// The client reads nothing until its writes stall, so the
				// echo fills every buffer on the way back and attlsd's
				// writes to both peers block.
				stalled := make(chan int64, 1)
				go func() { stalled <- flood(c) }()
				select {
				case <-stalled:
				case <-time.After(bound):
					c.Close()
					<-stalled
					t.Fatalf("client writes still flowing %s later, want them stalled and "+
						"the connection closed at the idle timeout", bound)
				}
				return c.LocalAddr().String()
			}, "idle timeout: no byte for 2s"},
		{"half-closed-client-never-reads", false,
			func(ctx context.Context, bc *backendConn) {
				io.Copy(io.Discard, bc)
				flood(bc)
			},
			func(t *testing.T, rig *faultRig) string {
				c := rig.dialTLS(t)
				// The client sends its request and its end, and never
				// reads the endless answer: attlsd's writes to it block
				// while the other direction has ended.
				io.WriteString(c, "request")
				c.CloseWrite()
				rig.waitCloseLine(t, c, bound)
				waitEnd(t, c, bound)
				return c.LocalAddr().String()
			}, "half-close timeout: no byte for 2s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			rig := newFaultRig(t, tt.inNetns, ruleAttrs, func(bc *backendConn) {
				bc.SetDeadline(time.Time{})
				tt.backend(ctx, bc)
			})
			client := tt.client(t, rig)

			line := rig.d.closeLine(t, client)
			if !strings.Contains(line.str("reason"), tt.wantReason) {
				t.Errorf("close line reason: got %q, want one with %q", line.str("reason"), tt.wantReason)
			}
			rig.leaks.check(t)
		})
	}
}

// TestSlowClients holds 2000 connections that never send a byte and 300
// that send a ClientHello one byte every 500 ms against a rule with a 3 s
// handshake timeout, all at once. While they are held, curl, Python's ssl
// module and a Go client each complete a handshake and a request: every
// one of them is done before attlsd has closed any slow connection. Then
// attlsd closes each slow connection at its handshake timeout, not
// before, logs it with code 5004, and keeps nothing of them.
func TestSlowClients(t *testing.T) {
	python := needTool(t, "python3", "python3")
	needTool(t, "curl", "curl")
	const (
		silent, dribbling = 2000, 300
		timeout           = 3 * time.Second
		bound             = timeout + 5*time.Second // waiting for the closes
	)
	b := startBackend(t, answerHTTP("ok\n"))
	d, admin := hostileDaemon(t, nil, b.addr, []string{`handshake_timeout = "3s"`}, nil)
	leaks := watchLeaks(t, d, admin, adminClient(nil))
	addr := d.addr("127.0.0.1", 0)

	var order atomic.Int64
	slow := append(openSlow(t, addr, silent, 0, bound, &order),
		openSlow(t, addr, dribbling, 500*time.Millisecond, bound, &order)...)
	waitSockets(t, d.pid(), leaks.fds.sockets+len(slow))

	good := map[string]int64{}
	url, resolve := httpsURL(addr)
	if res := curl(t, url, resolve...); res.code != 0 || res.body != "ok\n" {
		t.Errorf("curl among slow clients: got exit %d, body %q; want 0, %q\n%s",
			res.code, res.body, "ok\n", res.stderr)
	}
	good["curl"] = order.Add(1)
	if ended, _ := pythonRequest(t, python, addr); ended != "close_notify" {
		t.Errorf("python among slow clients: got an end by %s, want close_notify", ended)
	}
	good["python"] = order.Add(1)
	goGet(t, addr)
	good["go"] = order.Add(1)

	first := checkSlowEnds(t, slow, timeout)
	for name, seq := range good {
		if seq > first {
			t.Errorf("%s client: done as event %d, after the first slow connection was closed "+
				"(event %d); want done while every slow connection was still held", name, seq, first)
		}
	}
	checkTimeoutLines(t, d, slow)
	leaks.check(t)
}

// goGet sends a request with Go's crypto/tls and checks the answer.
func goGet(t *testing.T, addr string) {
	t.Helper()
	c := dialTLS(t, addr, clientTLS(t))
	defer c.Close()
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("go client among slow clients: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil || string(body) != "ok\n" {
		t.Errorf("go client among slow clients: got body %q, %v; want %q", body, err, "ok\n")
	}
}

// checkSlowEnds waits for attlsd to end every slow connection and checks
// that each ended by attlsd's doing (end of stream or reset, not the
// test's own bound) and no earlier than timeout after it was opened. It
// returns the order of the first end.
func checkSlowEnds(t *testing.T, slow []*slowConn, timeout time.Duration) int64 {
	t.Helper()
	first := int64(-1)
	bad := 0
	for _, s := range slow {
		<-s.done
		if first < 0 || s.seq < first {
			first = s.seq
		}
		if !errIsClosed(s.err) || s.ended < timeout {
			if bad++; bad <= 5 {
				t.Errorf("slow connection %s: got %v after %s; want closed by attlsd, "+
					"not before its %s handshake timeout", s.c.LocalAddr(), s.err,
					s.ended.Round(time.Millisecond), timeout)
			}
		}
	}
	if bad > 5 {
		t.Errorf("... and %d more slow connections like these", bad-5)
	}
	return first
}

// checkTimeoutLines checks that attlsd logged each slow connection as a
// handshake timeout, code 5004.
func checkTimeoutLines(t *testing.T, d *daemon, slow []*slowConn) {
	t.Helper()
	want := make(map[string]bool, len(slow))
	for _, s := range slow {
		want[s.c.LocalAddr().String()] = true
	}
	timedOut := func() int {
		n := 0
		for _, l := range d.closeLines() {
			if want[l.str("client")] && l.num("code") == 5004 &&
				strings.HasPrefix(l.str("reason"), "handshake timed out") {
				n++
			}
		}
		return n
	}
	deadline := time.Now().Add(logTimeout)
	for timedOut() < len(want) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := timedOut(); n != len(want) {
		t.Errorf("close lines with code 5004 for the slow connections: got %d, want %d", n, len(want))
	}
}

// TestDescriptorsExhausted runs attlsd with 64 descriptors and fills them
// with connections in their handshake until two are left, which the
// first relay of the process takes (its client and its backend), and
// then until accept fails. While the test holds them, attlsd backs off
// instead of retrying at once: a bounded count of "accept failed" lines,
// little CPU. It does not exit, and once the test lets go, a new client
// is served and idle relays park again, though the parker could not be
// made while no descriptor was free.
func TestDescriptorsExhausted(t *testing.T) {
	prlimit := needTool(t, "prlimit", "util-linux")
	const limit = 64
	b := startBackend(t, echo)
	d, admin := hostileDaemon(t, []string{prlimit, "--nofile=" + itoa(limit) + ":" + itoa(limit), attlsdBin},
		b.addr, []string{`handshake_timeout = "60s"`}, nil)
	if got := procLimit(t, d.pid(), "Max open files"); got != limit {
		t.Fatalf("attlsd's descriptor limit: got %d, want %d", got, limit)
	}
	leaks := watchLeaks(t, d, admin, adminClient(nil))
	addr := d.addr("127.0.0.1", 0)

	held := exhaustDescriptors(t, d, addr, limit, leaks.fds.sockets)
	checkBackoff(t, d)
	for _, c := range held {
		c.Close()
	}

	again := dialTLS(t, addr, clientTLS(t))
	roundTrip(t, again, "served again")
	again.Close()
	checkParks(t, admin, addr, leaks.goroutines)
	leaks.check(t)
}

// exhaustDescriptors takes every descriptor of attlsd, limited to limit
// and holding sockets sockets, with connections in their handshake but
// two, then one relay (its client and backend descriptors), then more
// connections until accept fails. It returns the connections.
func exhaustDescriptors(t *testing.T, d *daemon, addr string, limit, sockets int) []net.Conn {
	t.Helper()
	// Once the admin endpoint has closed the connection of the last fetch.
	for deadline := time.Now().Add(logTimeout); countFDs(t, d.pid()).sockets > sockets; {
		if time.Now().After(deadline) {
			t.Fatalf("attlsd holds %v, want %d sockets before the test's connections",
				countFDs(t, d.pid()), sockets)
		}
		time.Sleep(10 * time.Millisecond)
	}
	free := limit - countFDsBelow(t, d.pid(), limit).below
	var held []net.Conn
	for range free - 2 {
		held = append(held, dialTCP(t, addr))
	}
	waitSockets(t, d.pid(), sockets+free-2)
	relay := dialTLS(t, addr, clientTLS(t))
	roundTrip(t, relay, "ping")
	held = append(held, relay)

	mark := d.mark()
	for range 8 {
		held = append(held, dialTCP(t, addr))
	}
	d.waitLine(t, mark, "an \"accept failed\" line", isMessage("accept failed"))
	return held
}

// checkBackoff watches attlsd for a while with no descriptor free: it
// must back off (a bounded count of "accept failed" lines, little CPU
// time) and keep running.
func checkBackoff(t *testing.T, d *daemon) {
	t.Helper()
	const (
		hold = 3 * time.Second
		// maxFailLines bounds the "accept failed" lines over hold: the
		// backoff doubles from 5 ms to 1 s, about ten lines.
		maxFailLines = 50
		maxCPU       = 500 * time.Millisecond // over hold; retrying at once spins a core
	)
	mark, cpu := d.mark(), cpuTime(t, d.pid())
	time.Sleep(hold)
	if n := countLines(d.lines(mark), "accept failed"); n >= maxFailLines {
		t.Errorf("\"accept failed\" lines over %s with descriptors exhausted: got %d, want under %d",
			hold, n, maxFailLines)
	}
	if used := cpuTime(t, d.pid()) - cpu; used >= maxCPU {
		t.Errorf("attlsd CPU time over %s with descriptors exhausted: got %s, want under %s",
			hold, used, maxCPU)
	}
	select {
	case <-d.exited:
		t.Fatalf("attlsd exited with descriptors exhausted: %v", d.err)
	default:
	}
}

// checkParks opens idle relays and waits until they hold no goroutine,
// parked: the daemon's goroutines come back within goroutineSlack of
// level, where unparked relays would hold two each.
func checkParks(t *testing.T, admin, addr string, level int) {
	t.Helper()
	const idle = 8
	for range idle {
		c := dialTLS(t, addr, clientTLS(t))
		defer c.Close()
		roundTrip(t, c, "ping")
	}
	client := adminClient(nil)
	deadline := time.Now().Add(leakTimeout)
	n := goroutines(t, client, admin)
	for n > level+goroutineSlack && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		n = goroutines(t, client, admin)
	}
	if n > level+goroutineSlack {
		t.Errorf("goroutines with %d idle relays (waited %s): got %d, want at most %d: "+
			"idle relays do not park", idle, leakTimeout, n, level+goroutineSlack)
	}
}

// splitHelloGet sends a request with Go's default ClientHello, which
// offers an X25519MLKEM768 key share, its first flight written in small
// pieces, and checks the answer and the size of the first flight.
func splitHelloGet(t *testing.T, addr string) {
	t.Helper()
	raw := dialTCP(t, addr)
	sc := &splitConn{Conn: raw, piece: 64, pause: 5 * time.Millisecond}
	c := tls.Client(sc, clientTLS(t))
	defer c.Close()
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("request after a ClientHello in %d pieces: %v", sc.pieces, err)
	}
	body, _ := io.ReadAll(resp.Body)
	if string(body) != "ok\n" {
		t.Errorf("answer: got %q, want %q", body, "ok\n")
	}
	// An ML-KEM-768 encapsulation key alone is 1184 bytes.
	if g := c.ConnectionState().CurveID; g != tls.X25519MLKEM768 || sc.first < 1184 || sc.pieces < 10 {
		t.Errorf("first flight: got group %s, %d bytes in %d pieces; want %s, over 1184 bytes, 10 pieces or more",
			g, sc.first, sc.pieces, tls.X25519MLKEM768)
	}
}

// TestOddClientHellos: a ClientHello with a post-quantum key share that
// arrives in many small TCP segments, none with SNI, an IP address as
// SNI, and unknown ALPN protocols. Each completes, or is refused when no
// protocol is in common, and the backend's PROXY header says what was
// negotiated: AUTHORITY only when the client sent SNI, ALPN only when a
// protocol was agreed.
func TestOddClientHellos(t *testing.T) {
	openssl := needTool(t, "openssl", "openssl")
	handle, conns := record(answerHTTP("ok\n"))
	b := startBackend(t, handle)
	var admin string
	d := startDaemonArgs(t, "127.0.0.1", 3, func(p []int) string {
		return environment() + block("environment", "no-alpn",
			"certificate = "+quote(certDir+"/server.pem"),
			"private_key = "+quote(certDir+"/server-key.pem")) +
			inbound("api", p[0], b.addr) +
			inbound("any-alpn", p[1], b.addr, `environment = "no-alpn"`)
	}, func(p []int) []string {
		admin = "127.0.0.1:" + itoa(p[2])
		return []string{"--admin", admin}
	})
	leaks := watchLeaks(t, d, "http://"+admin, adminClient(nil))
	const absent = "(absent)"

	tests := []struct {
		name string
		rule int // the listener: 0 offers http/1.1 only, 1 no ALPN at all
		// client connects; it returns what openssl printed, or nothing.
		client func(t *testing.T, addr string) (stdout, stderr string, code int)
		// wantRefused is what the refused client reports; "" when the
		// request must go through.
		wantRefused string
		wantTLVs    map[proxyproto.PP2Type]string // absent: not in the header
		wantGroup   string
	}{
		{"post-quantum-key-share-in-pieces", 0, func(t *testing.T, addr string) (string, string, int) {
			splitHelloGet(t, addr)
			return "", "", 0
		}, "", map[proxyproto.PP2Type]string{
			proxyproto.PP2_TYPE_AUTHORITY: "localhost", proxyproto.PP2_TYPE_ALPN: "http/1.1",
		}, "X25519MLKEM768"},
		{"no-SNI", 0, func(t *testing.T, addr string) (string, string, int) {
			return sClient(t, openssl, addr, "-noservername")
		}, "", map[proxyproto.PP2Type]string{
			proxyproto.PP2_TYPE_AUTHORITY: absent, proxyproto.PP2_TYPE_ALPN: absent,
		}, ""},
		// RFC 6066 3 allows no IP address in SNI, but clients send one
		// when asked to; attlsd passes on what was sent, as HAProxy and
		// nginx do.
		{"IP-address-as-SNI", 0, func(t *testing.T, addr string) (string, string, int) {
			return sClient(t, openssl, addr, "-servername", "127.0.0.1", "-alpn", "http/1.1")
		}, "", map[proxyproto.PP2Type]string{
			proxyproto.PP2_TYPE_AUTHORITY: "127.0.0.1", proxyproto.PP2_TYPE_ALPN: "http/1.1",
		}, ""},
		{"unknown-ALPN-only", 0, func(t *testing.T, addr string) (string, string, int) {
			return sClient(t, openssl, addr, "-servername", "localhost", "-alpn", "foo,bar")
		}, "no application protocol", nil, ""},
		{"unknown-ALPN-and-http/1.1", 0, func(t *testing.T, addr string) (string, string, int) {
			return sClient(t, openssl, addr, "-servername", "localhost", "-alpn", "foo,http/1.1,bar")
		}, "", map[proxyproto.PP2Type]string{
			proxyproto.PP2_TYPE_AUTHORITY: "localhost", proxyproto.PP2_TYPE_ALPN: "http/1.1",
		}, ""},
		{"unknown-ALPN-where-none-is-set", 1, func(t *testing.T, addr string) (string, string, int) {
			return sClient(t, openssl, addr, "-servername", "localhost", "-alpn", "foo,bar")
		}, "", map[proxyproto.PP2Type]string{
			proxyproto.PP2_TYPE_AUTHORITY: "localhost", proxyproto.PP2_TYPE_ALPN: absent,
		}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := b.accepted.Load()
			stdout, stderr, code := tt.client(t, d.addr("127.0.0.1", tt.rule))
			if tt.wantRefused != "" {
				if code == 0 || !strings.Contains(stderr, tt.wantRefused) {
					t.Errorf("client: got exit %d, error output %q; want a failure saying %q",
						code, stderr, tt.wantRefused)
				}
				if n := b.accepted.Load() - before; n != 0 {
					t.Errorf("backend connections of a refused client: got %d, want 0", n)
				}
				return
			}
			if code != 0 || (stdout != "" && !strings.Contains(stdout, "ok\n")) {
				t.Fatalf("client: got exit %d, output %q; want 0 and the answer\n%s", code, stdout, stderr)
			}
			bc := receive(t, conns, "backend connection")
			for typ, want := range tt.wantTLVs {
				got, ok := bc.tlv(typ)
				if !ok {
					got = absent
				}
				if got != want {
					t.Errorf("TLV 0x%02x: got %q, want %q", byte(typ), got, want)
				}
			}
			if tt.wantGroup != "" {
				ssl, _ := bc.ssl()
				if g, _ := sslSub(ssl, proxyproto.PP2_SUBTYPE_SSL_GROUP); g != tt.wantGroup {
					t.Errorf("SSL group: got %q, want %q", g, tt.wantGroup)
				}
			}
		})
	}
	leaks.check(t)
}

// Memory budget of idle TLS connections, as README.md states it ("Under
// attack and under faults"): attlsd's resident memory with budgetConns
// idle TLS connections, and per connection. Measured on Linux amd64 with
// Go 1.26: about 11 KiB per connection from Python's ssl module, 13.6 KiB
// from Go clients, whose X25519MLKEM768 key share makes the ClientHello,
// and so the receive buffer crypto/tls keeps, larger; 12 MiB before any
// connection.
const (
	budgetConns      = 10000
	budgetTotalMiB   = 200
	budgetPerConnKiB = 18
)

// memtrimSettle is how long attlsd takes to give memory back once
// connections stop arriving: internal/memtrim looks every 5 s and frees
// at the first look that saw none arrive since the one before.
const memtrimSettle = 11 * time.Second

// TestIdleConnectionMemory opens as many idle TLS connections as
// attlsd's descriptor limit allows, up to budgetConns, each after one
// small round trip, from Python's ssl module, lets attlsd settle, and
// measures its resident memory: per connection, and for budgetConns
// extrapolated, against the README's budget. Every connection must still
// be alive afterwards. The attlsd measured is built as users build it,
// without the race detector.
func TestIdleConnectionMemory(t *testing.T) {
	bin, err := plainAttlsd()
	if err != nil {
		t.Fatal(err)
	}
	backend := startPythonEcho(t)
	d, admin := hostileDaemon(t, []string{bin}, backend, nil, nil)
	leaks := watchLeaks(t, d, admin, adminClient(nil))

	n := idleCapacity(t, d.pid())
	base := rssKiB(t, d.pid())
	clients := startIdleClients(t, d.addr("127.0.0.1", 0), n)
	time.Sleep(memtrimSettle)
	rss := rssKiB(t, d.pid())
	if alive := clients.step(t, "checked").num("alive"); alive != float64(n) {
		t.Errorf("idle connections alive after settling: got %v of %d, want all", alive, n)
	}

	perConn := float64(rss-base) / float64(n)
	total := (float64(base) + perConn*budgetConns) / 1024
	t.Logf("%d idle TLS connections: RSS %d KiB, %d KiB before them; %.1f KiB each; "+
		"%d would take %.0f MiB", n, rss, base, perConn, budgetConns, total)
	if perConn > budgetPerConnKiB || total > budgetTotalMiB {
		t.Errorf("idle TLS connections: got %.1f KiB each, %.0f MiB for %d; want at most %d KiB "+
			"and %d MiB (README)", perConn, total, budgetConns, budgetPerConnKiB, budgetTotalMiB)
	}
	clients.step(t, "closed")
	leaks.check(t)
}

// idleCapacity is how many connections attlsd, at two descriptors each,
// can hold under its descriptor limit, up to budgetConns.
func idleCapacity(t *testing.T, pid int) int {
	t.Helper()
	const spare = 64 // for what attlsd opens meanwhile
	n := min(budgetConns, (procLimit(t, pid, "Max open files")-countFDs(t, pid).total()-spare)/2)
	if n < budgetConns/10 {
		t.Fatalf("attlsd's descriptor limit allows %d connections; want at least %d to measure",
			n, budgetConns/10)
	}
	return n
}

// TestResumptionAcrossTrustChange: a client with a certificate resumes
// its TLS 1.3 session on a rule that requires client certificates; then
// a reload replaces the trust bundle with one that no longer holds the
// client's CA. The client's next connection, offering its old session,
// must not resume into the old trust: it gets a full handshake, and its
// certificate is refused.
func TestResumptionAcrossTrustChange(t *testing.T) {
	trust := filepath.Join(t.TempDir(), "trust.pem")
	writeFile(t, trust, string(readDevFile(t, "ca.pem")))
	b := startBackend(t, echo)
	d, admin := hostileDaemon(t, nil, b.addr, []string{"trust = [" + quote(trust) + "]"},
		[]string{`client_auth = "required"`})
	leaks := watchLeaks(t, d, admin, adminClient(nil))
	addr := d.addr("127.0.0.1", 0)

	pair, err := tls.LoadX509KeyPair(filepath.Join(certDir, "client.pem"),
		filepath.Join(certDir, "client-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := clientTLS(t)
	cfg.Certificates = []tls.Certificate{pair}
	cfg.MinVersion = tls.VersionTLS13
	cfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	connect := func() (resumed bool, err error) {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
		if err != nil {
			return false, err
		}
		defer c.Close()
		// TLS 1.3 clients finish first: a refused certificate, like the
		// session ticket, shows on the first read.
		return c.ConnectionState().DidResume, echoed(c, "ping")
	}
	for i, want := range []bool{false, true} {
		if resumed, err := connect(); err != nil || resumed != want {
			t.Fatalf("connection %d with the old trust: got resumed %v, %v; want %v, nil",
				i+1, resumed, err, want)
		}
	}

	mark := d.mark()
	foreign, err := os.ReadFile(filepath.Join(newPKI(t), "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	renameOver(t, trust, foreign)
	d.waitGeneration(t, mark, 2)
	if resumed, err := connect(); resumed || err == nil {
		t.Errorf("connection after the trust changed: got resumed %v, %v; "+
			"want a full handshake and the certificate refused", resumed, err)
	}
	leaks.check(t)
}
