package e2e

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
	"github.com/pires/go-proxyproto/tlvparse"
	"golang.org/x/sys/unix"
)

// leakTimeout bounds how long a daemon may take to close what a test
// left behind: connections in their handshake end at its timeout, parked
// relays at their silence limit.
const leakTimeout = 15 * time.Second

// goroutineSlack is how many goroutines a daemon may hold above its
// level once a test's connections are gone: the parker's loop, started
// with the first relay, and timers that are firing.
const goroutineSlack = 3

// pid is attlsd's process id: launchCmd's wrappers exec it in place.
func (d *daemon) pid() int { return d.cmd.Process.Pid }

// fdCount counts a process's open descriptors by kind.
type fdCount struct {
	sockets int // connections and listeners
	epolls  int // epoll sets: the runtime's, and the parker's once a relay ran
	inotify int // the reload watcher's
	other   int // files, pipes, eventfds
	below   int // descriptors numbered below the limit given to countFDsBelow
}

// total is how many descriptors were counted.
func (c fdCount) total() int { return c.sockets + c.epolls + c.inotify + c.other }

func (c fdCount) String() string {
	return fmt.Sprintf("%d sockets, %d epoll sets, %d inotify, %d other",
		c.sockets, c.epolls, c.inotify, c.other)
}

// countFDs reads /proc/PID/fd. A descriptor closed while it is read is
// not counted.
func countFDs(t *testing.T, pid int) fdCount {
	t.Helper()
	return countFDsBelow(t, pid, 0)
}

// countFDsBelow is countFDs that also counts, in below, the descriptors
// numbered under limit: those that count against a descriptor limit set
// after the others were inherited.
func countFDsBelow(t *testing.T, pid, limit int) fdCount {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("open descriptors of %d: %v", pid, err)
	}
	var c fdCount
	for _, e := range ents {
		target, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		if n, _ := strconv.Atoi(e.Name()); n < limit {
			c.below++
		}
		switch {
		case strings.HasPrefix(target, "socket:"):
			c.sockets++
		case target == "anon_inode:[eventpoll]":
			c.epolls++
		case target == "anon_inode:inotify":
			c.inotify++
		default:
			c.other++
		}
	}
	return c
}

// adminClient fetches from an admin endpoint without keeping the
// connection, so that the fetch leaves no descriptor or goroutine in the
// daemon. dial, when set, makes the connection (into a namespace, say).
func adminClient(dial func(ctx context.Context, network, addr string) (net.Conn, error)) *http.Client {
	return &http.Client{Timeout: 10 * time.Second,
		Transport: &http.Transport{DisableKeepAlives: true, DialContext: dial}}
}

// goroutines returns the daemon's go_goroutines from admin's /metrics.
func goroutines(t *testing.T, c *http.Client, admin string) int {
	t.Helper()
	resp, err := c.Get(admin + "/metrics")
	if err != nil {
		t.Fatalf("GET %s/metrics: %v", admin, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s/metrics: %v", admin, err)
	}
	n, ok := metric(string(body), "go_goroutines", nil)
	if !ok {
		t.Fatalf("no go_goroutines in %s/metrics", admin)
	}
	return int(n)
}

// leakWatch holds a daemon's level of descriptors and goroutines, taken
// before a test's connections, to compare with once they are gone.
type leakWatch struct {
	pid        int
	admin      string
	client     *http.Client
	fds        fdCount
	goroutines int
}

// watchLeaks takes the level of d, whose admin endpoint is admin
// ("http://host:port"), reached with client.
func watchLeaks(t *testing.T, d *daemon, admin string, client *http.Client) *leakWatch {
	t.Helper()
	w := &leakWatch{pid: d.pid(), admin: admin, client: client}
	// The reload watcher starts just after "attlsd started", and logs its
	// folders (at debug) once both of its inotify instances are set up.
	if _, ok := d.log.find(isMessage("watching policy folders")); !ok {
		for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			if _, ok := d.log.find(isMessage("watching policy folders")); ok ||
				time.Now().After(deadline) {
				break
			}
		}
	}
	// Descriptors first: the admin endpoint may still be closing the
	// connection of the fetch when its answer has arrived.
	w.fds = countFDs(t, w.pid)
	w.goroutines = goroutines(t, client, admin)
	return w
}

// check waits, up to leakTimeout, until the daemon is back at its level:
// as many sockets and other descriptors as before, one more epoll set at
// most (the parker's, created when the first relay starts), and its
// goroutines within goroutineSlack of before.
func (w *leakWatch) check(t *testing.T) {
	t.Helper()
	var fds fdCount
	var n int
	deadline := time.Now().Add(leakTimeout)
	for {
		// Descriptors first, as for the level: the admin endpoint may still
		// be closing the connection of the previous fetch.
		fds = countFDs(t, w.pid)
		n = goroutines(t, w.client, w.admin)
		if w.level(fds, n) {
			return
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Errorf("daemon after the test's connections ended (waited %s): got %s and %d goroutines; "+
		"want %s (one more epoll set at most) and at most %d goroutines",
		leakTimeout, fds, n, w.fds, w.goroutines+goroutineSlack)
}

func (w *leakWatch) level(fds fdCount, n int) bool {
	return fds.sockets <= w.fds.sockets && fds.other <= w.fds.other &&
		fds.inotify <= w.fds.inotify && fds.epolls <= w.fds.epolls+1 &&
		n <= w.goroutines+goroutineSlack
}

// hostileDaemon runs attlsd with rule "api" on 127.0.0.1 in front of
// backend, envAttrs and ruleAttrs adjusting the environment and the rule,
// with its admin endpoint on another loopback port, started by runner
// (see startDaemonUnder). It returns the daemon and the admin URL.
func hostileDaemon(t *testing.T, runner []string, backend string, envAttrs, ruleAttrs []string,
	args ...string) (*daemon, string) {
	t.Helper()
	var admin string
	d := startDaemonUnder(t, runner, "127.0.0.1", 2, func(p []int) string {
		return environment(envAttrs...) + inbound("api", p[0], backend, ruleAttrs...)
	}, func(p []int) []string {
		admin = "127.0.0.1:" + itoa(p[1])
		return append([]string{"--admin", admin}, args...)
	})
	return d, "http://" + admin
}

// netns is a network namespace of one test, with only its loopback up.
type netns struct {
	name    string
	ip, nft string // tool paths
}

var hostileNetnsSeq atomic.Int32

// newNetns creates a namespace and deletes it when the test ends. It
// skips the test when not root; as root a namespace that cannot be made
// skips it, or fails it under ATTLSD_E2E_STRICT=1.
func newNetns(t *testing.T) *netns {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skipf("needs root for a network namespace; running as uid %d", os.Geteuid())
	}
	ns := &netns{ip: needTool(t, "ip", "iproute2"), nft: needTool(t, "nft", "nftables")}
	ns.name = fmt.Sprintf("attlsd-%d-hostile-%d", os.Getpid(), hostileNetnsSeq.Add(1))
	if out, err := exec.Command(ns.ip, "netns", "add", ns.name).CombinedOutput(); err != nil {
		missing(t, fmt.Sprintf("cannot create a network namespace: %v: %s", err, out))
	}
	t.Cleanup(func() { exec.Command(ns.ip, "netns", "del", ns.name).Run() })
	if out, err := exec.Command(ns.ip, "-n", ns.name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		missing(t, fmt.Sprintf("loopback up in %s: %v: %s", ns.name, err, out))
	}
	return ns
}

// runner is the command that runs a program inside the namespace.
func (ns *netns) runner(prog string) []string {
	return []string{ns.ip, "netns", "exec", ns.name, prog}
}

// nftables replaces the namespace's ruleset with rules. A kernel that
// refuses them skips the test, or fails it under ATTLSD_E2E_STRICT=1.
func (ns *netns) nftables(t *testing.T, rules string) {
	t.Helper()
	lab := &netnsLab{ip: ns.ip, nft: ns.nft}
	if err := lab.loadNft(ns.name, rules); err != nil {
		missing(t, "nftables in a network namespace: "+err.Error())
	}
}

// do runs f on an OS thread that has entered the namespace, so that the
// sockets f makes live there (and stay there, wherever they are used
// later). The thread is never given back: it ends with its goroutine, so
// no other goroutine ever runs in the namespace.
func (ns *netns) do(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		fd, err := unix.Open("/run/netns/"+ns.name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- fmt.Errorf("open namespace %s: %w", ns.name, err)
			return
		}
		err = unix.Setns(fd, unix.CLONE_NEWNET)
		unix.Close(fd)
		if err != nil {
			errc <- fmt.Errorf("enter namespace %s: %w", ns.name, err)
			return
		}
		errc <- f()
	}()
	return <-errc
}

// dial connects to addr from inside the namespace.
func (ns *netns) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := ns.do(func() error {
		var err error
		c, err = (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// listen binds a TCP listener on 127.0.0.1 inside the namespace.
func (ns *netns) listen(t *testing.T) net.Listener {
	t.Helper()
	var ln net.Listener
	if err := ns.do(func() error {
		var err error
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return ln
}

// plainAttlsd is an attlsd built without the race detector, for
// measurements of the binary that users run: the detector multiplies
// memory use. Under a test binary without it, it is attlsdBin.
var plainAttlsd = sync.OnceValues(func() (string, error) {
	if !raceEnabled {
		return attlsdBin, nil
	}
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	out := filepath.Join(filepath.Dir(attlsdBin), "attlsd-plain")
	cmd := exec.Command(goTool(), "build", "-trimpath", "-o", out, "./cmd/attlsd")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/attlsd: %w\n%s", err, b)
	}
	return out, nil
})

// pythonEcho is a backend for thousands of connections on one thread: it
// skips each connection's PROXY v2 header and echoes the rest. It prints
// its address as a JSON line once listening.
const pythonEcho = `
import resource, selectors, socket

soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
ln = socket.socket()
ln.bind(("127.0.0.1", 0))
ln.listen(4096)
ln.setblocking(False)
sel = selectors.DefaultSelector()
sel.register(ln, selectors.EVENT_READ, None)
print('{"message": "listening", "addr": "127.0.0.1:%d"}' % ln.getsockname()[1], flush=True)

def accept():
    while True:
        try:
            c, _ = ln.accept()
        except BlockingIOError:
            return
        c.setblocking(False)
        sel.register(c, selectors.EVENT_READ, [b""])  # header bytes so far; None once skipped

def serve(c, state):
    try:
        b = c.recv(65536)
    except BlockingIOError:
        return
    except OSError:
        b = b""
    if not b:
        sel.unregister(c)
        c.close()
        return
    if state[0] is not None:
        b = state[0] + b
        if len(b) < 16 or len(b) < 16 + int.from_bytes(b[14:16], "big"):
            state[0] = b
            return
        b, state[0] = b[16 + int.from_bytes(b[14:16], "big"):], None
    if b:
        c.sendall(b)  # a few bytes at a time: the socket buffer takes them

while True:
    for key, _ in sel.select():
        if key.data is None:
            accept()
        else:
            serve(key.fileobj, key.data)
`

// startPythonEcho runs pythonEcho and returns its address.
func startPythonEcho(t *testing.T) string {
	t.Helper()
	python := needTool(t, "python3", "python3")
	p := startProc(t, python, "-c", pythonEcho)
	l, err := p.out.wait(startTimeout, p.exited, isMessage("listening"))
	if err != nil {
		t.Fatalf("python echo backend: %v\n%s", err, p.out.text())
	}
	return l.str("addr")
}

// procLimit returns the soft limit named name ("Max open files") of
// process pid, from /proc/PID/limits.
func procLimit(t *testing.T, pid int, name string) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, name); ok {
			if f := strings.Fields(rest); len(f) > 0 {
				if n, err := strconv.Atoi(f[0]); err == nil {
					return n
				}
			}
		}
	}
	t.Fatalf("no %q in /proc/%d/limits", name, pid)
	return 0
}

// cpuTime returns the user and system CPU time process pid has used, from
// /proc/PID/stat.
func cpuTime(t *testing.T, pid int) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// The command name, in parentheses, may hold spaces: fields count
	// from the last ')'. utime and stime are fields 14 and 15.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	utime, err1 := strconv.Atoi(f[11])
	stime, err2 := strconv.Atoi(f[12])
	if err1 != nil || err2 != nil {
		t.Fatalf("/proc/%d/stat: utime %q, stime %q", pid, f[11], f[12])
	}
	const hz = 100 // USER_HZ, fixed at 100 on Linux
	return time.Duration(utime+stime) * time.Second / hz
}

// faultRig is attlsd in front of a backend that misbehaves, with the
// means to reach both: from the host, or from inside a network namespace
// where the backend's packets can be dropped.
type faultRig struct {
	d     *daemon
	addr  string // the rule's listener
	ns    *netns // nil: on the host
	ln    net.Listener
	leaks *leakWatch
}

// newFaultRig starts a backend that runs handle on each connection (its
// PROXY header read) and attlsd in front of it with ruleAttrs, inside a
// network namespace of its own when inNetns is set.
func newFaultRig(t *testing.T, inNetns bool, ruleAttrs []string,
	handle func(*backendConn)) *faultRig {
	t.Helper()
	rig := &faultRig{}
	var runner []string
	var dial func(ctx context.Context, network, addr string) (net.Conn, error)
	if inNetns {
		rig.ns = newNetns(t)
		rig.ln = rig.ns.listen(t)
		runner, dial = rig.ns.runner(attlsdBin), rig.ns.dial
	} else {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		rig.ln = ln
	}
	b := serveBackendOn(t, rig.ln, true, handle)
	d, admin := hostileDaemon(t, runner, b.addr, nil, ruleAttrs)
	rig.d, rig.addr = d, d.addr("127.0.0.1", 0)
	rig.leaks = watchLeaks(t, d, admin, adminClient(dial))
	return rig
}

// dialTLS connects a TLS client to the rule, from where the daemon runs.
func (rig *faultRig) dialTLS(t *testing.T) *tls.Conn {
	t.Helper()
	if rig.ns == nil {
		c := dialTLS(t, rig.addr, clientTLS(t))
		c.SetDeadline(time.Time{})
		return c
	}
	raw, err := rig.ns.dial(context.Background(), "tcp", rig.addr)
	if err != nil {
		t.Fatalf("dial %s in %s: %v", rig.addr, rig.ns.name, err)
	}
	c := tls.Client(raw, clientTLS(t))
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(ioTimeout))
	if err := c.Handshake(); err != nil {
		t.Fatalf("TLS handshake with %s: %v", rig.addr, err)
	}
	c.SetDeadline(time.Time{})
	return c
}

// vanish makes the backend disappear without a FIN or a reset: every
// packet to or from its port is dropped from now on.
func (rig *faultRig) vanish(t *testing.T) {
	t.Helper()
	port := rig.ln.Addr().(*net.TCPAddr).Port
	rig.ns.nftables(t, "table inet vanish {\n"+
		"  chain output {\n    type filter hook output priority 0;\n"+
		"    tcp sport "+itoa(port)+" drop\n    tcp dport "+itoa(port)+" drop\n  }\n}\n")
}

// waitCloseLine waits at most bound for attlsd's close line of client
// c, without reading from c.
func (rig *faultRig) waitCloseLine(t *testing.T, c net.Conn, bound time.Duration) {
	t.Helper()
	client := c.LocalAddr().String()
	if _, err := rig.d.log.wait(bound, rig.d.exited, func(l logLine) bool {
		return l.str("message") == "connection closed" && l.str("client") == client
	}); err != nil {
		t.Fatalf("close line for client %s: %v", client, err)
	}
}

// waitEnd reads from c until attlsd ends the connection, waiting at most
// bound.
func waitEnd(t *testing.T, c net.Conn, bound time.Duration) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(bound))
	if _, err := io.Copy(io.Discard, c); errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("client connection still open %s later, want it closed by attlsd", bound)
	}
}

// flood writes to c until a write fails, and returns how much it wrote.
func flood(c net.Conn) int64 {
	chunk := make([]byte, 16<<10)
	var n int64
	for {
		k, err := c.Write(chunk)
		n += int64(k)
		if err != nil {
			return n
		}
	}
}

// roundTrip sends msg on c and reads it back from an echoing backend.
func roundTrip(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	if err := echoed(c, msg); err != nil {
		t.Fatalf("client round trip: %v", err)
	}
}

// echoed sends msg on c and reads it back from an echoing backend, within
// ioTimeout.
func echoed(c net.Conn, msg string) error {
	c.SetDeadline(time.Now().Add(ioTimeout))
	defer c.SetDeadline(time.Time{})
	if _, err := io.WriteString(c, msg); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != msg {
		return fmt.Errorf("read: got %q, %v; want %q", got, err, msg)
	}
	return nil
}

// slowConn is a client that opened a TCP connection to a TLS port and
// never completes its handshake.
type slowConn struct {
	c      net.Conn
	dialed time.Time
	done   chan struct{} // closed once attlsd has ended the connection
	ended  time.Duration // from dialed until it ended
	seq    int64         // place of the end in the test's order of events
	err    error         // what the read that saw the end returned
}

// openSlow opens n connections to addr that send nothing, or, with
// interval above zero, the start of a ClientHello one byte per interval.
// Each notes when and in what order (from order) attlsd ends it, waiting
// at most bound.
func openSlow(t *testing.T, addr string, n int, interval, bound time.Duration,
	order *atomic.Int64) []*slowConn {
	t.Helper()
	out := make([]*slowConn, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	const dialers = 8
	for w := range dialers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += dialers {
				s, err := dialSlow(addr, interval, bound, order)
				if err != nil {
					errs <- err
					return
				}
				out[i] = s
			}
		}()
	}
	wg.Wait()
	close(errs)
	for _, s := range out {
		if s != nil {
			t.Cleanup(func() { s.c.Close() })
		}
	}
	if err := <-errs; err != nil {
		t.Fatalf("open slow connections: %v", err)
	}
	return out
}

func dialSlow(addr string, interval, bound time.Duration, order *atomic.Int64) (*slowConn, error) {
	// The time before the dial: attlsd cannot accept, and start the
	// handshake timeout, any earlier.
	dialed := time.Now()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	s := &slowConn{c: c, dialed: dialed, done: make(chan struct{})}
	c.SetReadDeadline(s.dialed.Add(bound))
	if interval > 0 {
		go trickle(c, interval)
	}
	go func() {
		_, s.err = c.Read(make([]byte, 1))
		s.ended, s.seq = time.Since(s.dialed), order.Add(1)
		close(s.done)
	}()
	return s, nil
}

// waitSockets waits until process pid holds at least n sockets.
func waitSockets(t *testing.T, pid, n int) {
	t.Helper()
	deadline := time.Now().Add(ioTimeout)
	for {
		got := countFDs(t, pid).sockets
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("attlsd holds %d sockets after %s, want %d", got, ioTimeout, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// countLines is how many of ls have message msg.
func countLines(ls []logLine, msg string) int {
	n := 0
	for _, l := range ls {
		if l.str("message") == msg {
			n++
		}
	}
	return n
}

// splitConn writes the first flight of a handshake (everything before
// the first read) in pieces of piece bytes with a pause between them, so
// that the ClientHello reaches the server in many TCP segments (Go sets
// TCP_NODELAY), and counts what it wrote so.
type splitConn struct {
	net.Conn
	piece  int
	pause  time.Duration
	read   bool
	first  int // bytes of the first flight
	pieces int
}

func (c *splitConn) Write(p []byte) (int, error) {
	if c.read {
		return c.Conn.Write(p)
	}
	n := 0
	for len(p) > 0 {
		if n > 0 {
			time.Sleep(c.pause)
		}
		k, err := c.Conn.Write(p[:min(len(p), c.piece)])
		n, c.first, c.pieces = n+k, c.first+k, c.pieces+1
		if err != nil {
			return n, err
		}
		p = p[k:]
	}
	return n, nil
}

func (c *splitConn) Read(p []byte) (int, error) {
	c.read = true
	return c.Conn.Read(p)
}

// sClient runs openssl s_client against addr with args, sending an HTTP
// request, and returns its output, error output and exit status.
func sClient(t *testing.T, openssl, addr string, args ...string) (string, string, int) {
	t.Helper()
	req := "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
	base := []string{"s_client", "-quiet", "-connect", addr, "-CAfile", caFile(), "-verify_return_error"}
	return run(t, req, openssl, append(base, args...)...)
}

// sslSub returns the value of the SSL TLV's sub-TLV of type typ.
func sslSub(ssl tlvparse.PP2SSL, typ proxyproto.PP2Type) (string, bool) {
	for _, sub := range ssl.TLV {
		if sub.Type == typ {
			return string(sub.Value), true
		}
	}
	return "", false
}

// pythonIdleClients opens N TLS connections, each after one round trip
// through an echoing backend, from a few threads (the ssl module lets go
// of the interpreter lock while it waits), and reports "opened". Each
// SIGUSR1 then moves it one step: a round trip on every connection,
// reported as "checked" with how many answered, then closing them all,
// "closed".
const pythonIdleClients = `
import json, resource, signal, socket, ssl, sys, threading

host, port, cafile, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR1])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
ctx = ssl.create_default_context(cafile=cafile)
conns, errors = [None] * n, []

def say(**kw):
    print(json.dumps(kw), flush=True)

def echo(c, msg):
    c.sendall(msg)
    got = b""
    while len(got) < len(msg):
        b = c.recv(len(msg) - len(got))
        if not b:
            raise EOFError("closed")
        got += b
    if got != msg:
        raise ValueError("echo: got %r" % got)

def open_some(first, step):
    try:
        for i in range(first, n, step):
            s = socket.create_connection((host, port), timeout=30)
            # The request follows the handshake's last flight at once:
            # Nagle would hold it for the server's delayed ACK.
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            c = ctx.wrap_socket(s, server_hostname="localhost")
            echo(c, b"ping")
            conns[i] = c
    except Exception as e:
        errors.append("connection %d: %r" % (i, e))

threads = [threading.Thread(target=open_some, args=(k, 8)) for k in range(8)]
for th in threads:
    th.start()
for th in threads:
    th.join()
if errors:
    say(message="failed", error=errors[0])
    sys.exit(1)
say(message="opened", n=n)

signal.sigwait([signal.SIGUSR1])
alive, first = 0, ""
for c in conns:
    try:
        echo(c, b"still there?")
        alive += 1
    except Exception as e:
        first = first or repr(e)
say(message="checked", alive=alive, error=first)

signal.sigwait([signal.SIGUSR1])
for c in conns:
    c.close()
say(message="closed")
signal.sigwait([signal.SIGUSR1])
`

// idleClients is a running pythonIdleClients.
type idleClients struct{ p *proc }

// startIdleClients runs pythonIdleClients for n connections to addr and
// waits until they are open.
func startIdleClients(t *testing.T, addr string, n int) *idleClients {
	t.Helper()
	python := needTool(t, "python3", "python3")
	host, port, _ := net.SplitHostPort(addr)
	ic := &idleClients{p: startProc(t, python, "-c", pythonIdleClients, host, port, caFile(), itoa(n))}
	ic.wait(t, "opened", 5*time.Minute)
	return ic
}

// step moves the clients on and returns the line that reports it.
func (ic *idleClients) step(t *testing.T, msg string) logLine {
	t.Helper()
	if err := ic.p.cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		t.Fatalf("signal the Python clients: %v", err)
	}
	return ic.wait(t, msg, 5*time.Minute)
}

func (ic *idleClients) wait(t *testing.T, msg string, timeout time.Duration) logLine {
	t.Helper()
	l, err := ic.p.out.wait(timeout, ic.p.exited, isMessage(msg))
	if err != nil {
		t.Fatalf("Python clients: no %q: %v\n%s", msg, err, ic.p.out.text())
	}
	return l
}
