package e2e

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Bounds on waiting for processes.
const (
	startTimeout = 15 * time.Second // a process is up and listening
	stopTimeout  = 10 * time.Second // a process exits after SIGTERM
	logTimeout   = 10 * time.Second // a log line shows up
	ioTimeout    = 30 * time.Second // one client or backend conversation
)

// bindRetries is how often a start is retried when another process took
// a port between freePort closing it and the daemon binding it.
const bindRetries = 5

// daemon is a running attlsd.
type daemon struct {
	cmd    *exec.Cmd
	ports  []int
	log    *logSink
	policy string // the policy file
	exited chan struct{}
	err    error // Wait's result, set before exited closes

	stopOnce sync.Once
}

// startDaemon writes the policy that makePolicy returns for nports fresh
// ports on host, runs attlsd on it and waits for "attlsd started". attlsd
// is stopped with SIGTERM when the test ends; it must then exit 0 having
// logged "attlsd stopped".
func startDaemon(t *testing.T, host string, nports int, makePolicy func(ports []int) string) *daemon {
	t.Helper()
	return startDaemonArgs(t, host, nports, makePolicy, nil)
}

// startDaemonArgs is startDaemon with more command-line arguments, made
// from the same fresh ports (an --admin port, say).
func startDaemonArgs(t *testing.T, host string, nports int, makePolicy func(ports []int) string,
	makeArgs func(ports []int) []string) *daemon {
	t.Helper()
	return startDaemonUnder(t, nil, host, nports, makePolicy, makeArgs)
}

// startDaemonUnder is startDaemonArgs with attlsd started by the command
// runner, which ends by running attlsd in place ("prlimit --nofile=64:64
// attlsd", "ip netns exec NS attlsd", another attlsd build); nil runs the
// attlsd built for the tests. "run" and its arguments follow runner.
func startDaemonUnder(t *testing.T, runner []string, host string, nports int,
	makePolicy func(ports []int) string, makeArgs func(ports []int) []string) *daemon {
	t.Helper()
	dir := t.TempDir()
	for try := 1; ; try++ {
		ports := freePorts(t, host, nports)
		file := filepath.Join(dir, "policy.hcl")
		writeFile(t, file, makePolicy(ports))
		var args []string
		if makeArgs != nil {
			args = makeArgs(ports)
		}
		d, err := launchUnder(runner, file, ports, args...)
		if err == nil {
			t.Cleanup(func() { d.stop(t) })
			return d
		}
		if !errors.Is(err, errAddrInUse) || try == bindRetries {
			t.Fatalf("start attlsd: %v\npolicy:\n%s", err, makePolicy(ports))
		}
	}
}

var errAddrInUse = errors.New("address already in use")

// launchDaemon runs attlsd on file and waits until it has started or
// exited. A test that leaves a connection open when it stops the daemon
// waits for the drain: one second here, the drain tests set their own.
// args come after these defaults and may override them.
func launchDaemon(file string, ports []int, args ...string) (*daemon, error) {
	return launchUnder(nil, file, ports, args...)
}

// launchUnder is launchDaemon with attlsd started by runner (see
// startDaemonUnder).
func launchUnder(runner []string, file string, ports []int, args ...string) (*daemon, error) {
	if len(runner) == 0 {
		runner = []string{attlsdBin}
	}
	base := []string{"run", "--policy", file, "--log-level", "debug", "--drain-timeout", "1s"}
	argv := append(append(slices.Clone(runner[1:]), base...), args...)
	return launchCmd(exec.Command(runner[0], argv...), file, ports)
}

// launchCmd starts cmd, which must end up running attlsd on file (under
// a wrapper such as unshare, say), and waits until attlsd has started or
// exited.
func launchCmd(cmd *exec.Cmd, file string, ports []int) (*daemon, error) {
	cmd.Env = binEnv()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	d := &daemon{cmd: cmd, ports: ports, log: newLogSink(stderr),
		policy: file, exited: make(chan struct{})}
	go func() {
		<-d.log.eof // Wait closes the pipe: read everything first
		d.err = cmd.Wait()
		close(d.exited)
	}()

	if _, err := d.log.wait(startTimeout, d.exited, isMessage("attlsd started")); err != nil {
		d.kill()
		if strings.Contains(d.log.text(), "address already in use") {
			return nil, errAddrInUse
		}
		return nil, fmt.Errorf("%w; attlsd said:\n%s", err, d.log.text())
	}
	return d, nil
}

// addr is the host:port of listener i.
func (d *daemon) addr(host string, i int) string {
	return net.JoinHostPort(host, strconv.Itoa(d.ports[i]))
}

// stop sends SIGTERM and checks that attlsd stops cleanly.
func (d *daemon) stop(t *testing.T) { d.stopWith(t, syscall.SIGTERM) }

// stopWith sends sig and checks that attlsd stops cleanly: exit status 0,
// "attlsd stopped" logged, and no data race reported. Only the first call
// of stopWith or waitExit does anything.
func (d *daemon) stopWith(t *testing.T, sig syscall.Signal) {
	t.Helper()
	d.stopOnce.Do(func() {
		d.cmd.Process.Signal(sig)
		d.checkExit(t, "after "+sig.String())
	})
}

// waitExit waits, without sending anything, for attlsd to exit on its own
// (a drain that ends) and checks it stopped cleanly, as stopWith does.
func (d *daemon) waitExit(t *testing.T) {
	t.Helper()
	d.stopOnce.Do(func() { d.checkExit(t, "with no signal sent") })
}

// checkExit waits for the exit, at most stopTimeout, and checks it.
func (d *daemon) checkExit(t *testing.T, when string) {
	t.Helper()
	select {
	case <-d.exited:
	case <-time.After(stopTimeout):
		d.kill()
		t.Errorf("attlsd still running %s after %s; killed", when, stopTimeout)
	}
	if d.err != nil {
		t.Errorf("attlsd exit %s: got %v, want status 0", when, d.err)
	}
	if _, ok := d.log.find(isMessage("attlsd stopped")); !ok {
		t.Errorf("attlsd log %s: no \"attlsd stopped\" line", when)
	}
	if strings.Contains(d.log.text(), "DATA RACE") {
		t.Errorf("attlsd reported a data race")
	}
	if t.Failed() {
		t.Logf("attlsd log:\n%s", d.log.text())
	}
}

// binEnv is the environment for the binaries built by TestMain. A race
// enabled binary otherwise sleeps a second before exiting.
func binEnv() []string {
	env := os.Environ()
	if os.Getenv("GORACE") == "" {
		env = append(env, "GORACE=atexit_sleep_ms=0")
	}
	return env
}

// kill ends the process at once and waits for it.
func (d *daemon) kill() {
	d.cmd.Process.Kill()
	select {
	case <-d.exited:
	case <-time.After(stopTimeout):
	}
}

// closeLine waits for the "connection closed" line of the client at addr
// (host:port, as attlsd prints it) and returns it.
func (d *daemon) closeLine(t *testing.T, client string) logLine {
	t.Helper()
	l, err := d.log.wait(logTimeout, d.exited, func(l logLine) bool {
		return l.str("message") == "connection closed" && l.str("client") == client
	})
	if err != nil {
		t.Fatalf("close line for client %s: %v\nattlsd log:\n%s", client, err, d.log.text())
	}
	return l
}

// closeLines returns every "connection closed" line logged so far.
func (d *daemon) closeLines() []logLine {
	return d.log.all(isMessage("connection closed"))
}

// logLine is one JSON object from attlsd's log.
type logLine map[string]any

// str returns a string field, or "" when absent or not a string.
func (l logLine) str(key string) string {
	s, _ := l[key].(string)
	return s
}

// num returns a numeric field, or -1 when absent or not a number.
func (l logLine) num(key string) float64 {
	f, ok := l[key].(float64)
	if !ok {
		return -1
	}
	return f
}

func (l logLine) String() string {
	b, _ := json.Marshal(map[string]any(l))
	return string(b)
}

// isMessage matches lines whose message is msg.
func isMessage(msg string) func(logLine) bool {
	return func(l logLine) bool { return l.str("message") == msg }
}

// logSink collects a process's JSON log lines as they arrive.
type logSink struct {
	mu      sync.Mutex
	lines   []logLine
	texts   []string      // every line, JSON or not
	changed chan struct{} // closed and replaced on every new line
	eof     chan struct{} // closed when the stream ends
}

func newLogSink(r io.Reader) *logSink {
	s := &logSink{changed: make(chan struct{}), eof: make(chan struct{})}
	go s.read(r)
	return s
}

func (s *logSink) read(r io.Reader) {
	defer close(s.eof)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var l logLine
		if json.Unmarshal(sc.Bytes(), &l) != nil {
			l = nil // not JSON (a panic, a race report): kept as text only
		}
		s.mu.Lock()
		s.texts = append(s.texts, sc.Text())
		if l != nil {
			s.lines = append(s.lines, l)
		}
		close(s.changed)
		s.changed = make(chan struct{})
		s.mu.Unlock()
	}
	io.Copy(io.Discard, r)
}

// text returns everything logged so far.
func (s *logSink) text() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.texts) == 0 {
		return ""
	}
	return strings.Join(s.texts, "\n") + "\n"
}

// waitText returns the first line, JSON or not, that contains substr,
// waiting up to timeout for it.
func (s *logSink) waitText(timeout time.Duration, exited <-chan struct{},
	substr string) (string, error) {
	found := func() (string, bool) {
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, l := range s.texts {
			if strings.Contains(l, substr) {
				return l, true
			}
		}
		return "", false
	}
	deadline := time.After(timeout)
	for {
		s.mu.Lock()
		changed := s.changed
		s.mu.Unlock()
		if l, ok := found(); ok {
			return l, nil
		}
		select {
		case <-changed:
		case <-exited:
			if l, ok := found(); ok {
				return l, nil
			}
			return "", fmt.Errorf("process exited before logging %q", substr)
		case <-deadline:
			return "", fmt.Errorf("no line with %q within %s", substr, timeout)
		}
	}
}

// all returns the lines that match.
func (s *logSink) all(match func(logLine) bool) []logLine {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []logLine
	for _, l := range s.lines {
		if match(l) {
			out = append(out, l)
		}
	}
	return out
}

// find returns the first line that matches.
func (s *logSink) find(match func(logLine) bool) (logLine, bool) {
	if ls := s.all(match); len(ls) > 0 {
		return ls[0], true
	}
	return nil, false
}

// wait returns the first line that matches, waiting up to timeout for it.
// It gives up early when exited closes and no such line came.
func (s *logSink) wait(timeout time.Duration, exited <-chan struct{},
	match func(logLine) bool) (logLine, error) {
	deadline := time.After(timeout)
	for {
		s.mu.Lock()
		changed := s.changed
		s.mu.Unlock()
		if l, ok := s.find(match); ok {
			return l, nil
		}
		select {
		case <-changed:
		case <-exited:
			if l, ok := s.find(match); ok {
				return l, nil
			}
			return nil, errors.New("process exited before the line was logged")
		case <-deadline:
			return nil, fmt.Errorf("no such line within %s", timeout)
		}
	}
}

// freePorts returns n TCP ports on host that were free a moment ago. The
// caller retries when one was taken in between.
func freePorts(t *testing.T, host string, n int) []int {
	t.Helper()
	ports := make([]int, 0, n)
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			t.Fatalf("find a free port: %v", err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	for _, ln := range lns {
		ln.Close()
	}
	return ports
}

// writeFile writes text to path or fails the test.
func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// block renders an HCL block. Each attribute is a "name = value" line; a
// later line for the same name replaces an earlier one, so callers can
// start from defaults and override, and "name =" with no value removes it.
func block(kind, name string, attrs ...string) string {
	var names []string
	values := map[string]string{}
	for _, a := range attrs {
		k, _, _ := strings.Cut(a, "=")
		k = strings.TrimSpace(k)
		if _, ok := values[k]; !ok {
			names = append(names, k)
		}
		values[k] = a
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %q {\n", kind, name)
	for _, k := range names {
		if _, v, _ := strings.Cut(values[k], "="); strings.TrimSpace(v) != "" {
			fmt.Fprintf(&b, "  %s\n", values[k])
		}
	}
	b.WriteString("}\n")
	return b.String()
}

// environment is the "web" environment with the development certificate
// and CA; attrs add to or override its settings.
func environment(attrs ...string) string {
	base := []string{
		"certificate = " + strconv.Quote(filepath.Join(certDir, "server.pem")),
		"private_key = " + strconv.Quote(filepath.Join(certDir, "server-key.pem")),
		"trust = [" + strconv.Quote(filepath.Join(certDir, "ca.pem")) + "]",
		`alpn = ["http/1.1"]`,
	}
	return block("environment", "web", append(base, attrs...)...)
}

// inbound is a TLS rule on 127.0.0.1:port in the "web" environment that
// forwards to backend; attrs add to or override its settings.
func inbound(name string, port int, backend string, attrs ...string) string {
	base := []string{
		"port = " + strconv.Itoa(port),
		`address = "127.0.0.1"`,
		`environment = "web"`,
		"backend = " + strconv.Quote(backend),
	}
	return block("inbound", name, append(base, attrs...)...)
}

// simpleDaemon runs attlsd with one rule named "e2e" on 127.0.0.1 in front
// of backend. envAttrs and ruleAttrs adjust the environment and the rule.
func simpleDaemon(t *testing.T, backend string, envAttrs, ruleAttrs []string) *daemon {
	t.Helper()
	return startDaemon(t, "127.0.0.1", 1, func(p []int) string {
		return environment(envAttrs...) + inbound("e2e", p[0], backend, ruleAttrs...)
	})
}

// quote renders s as an HCL string.
func quote(s string) string { return strconv.Quote(s) }

// itoa is strconv.Itoa, short for building addresses.
func itoa(n int) string { return strconv.Itoa(n) }

// closeLineAfterExit finds the close line of client once attlsd has
// exited.
func (d *daemon) closeLineAfterExit(t *testing.T, client string) logLine {
	t.Helper()
	for _, l := range d.closeLines() {
		if l.str("client") == client {
			return l
		}
	}
	t.Errorf("no close line for %s before attlsd exited", client)
	return nil
}
