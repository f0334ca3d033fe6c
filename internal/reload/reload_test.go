package reload

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/rs/zerolog"

	"github.com/attlsd/attlsd/internal/testnet"
	"github.com/attlsd/attlsd/policy"
	"github.com/attlsd/attlsd/proxy"
)

// waitTimeout bounds waiting for a change to reach clients.
const waitTimeout = 5 * time.Second

// logBuffer collects JSON log lines from several goroutines.
type logBuffer struct {
	mu    sync.Mutex
	b     bytes.Buffer
	muted bool
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.muted {
		return len(p), nil
	}
	return l.b.Write(p)
}

// mute drops the lines logged from now on.
func (l *logBuffer) mute() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.muted = true
}

// count returns how many lines have message msg.
func (l *logBuffer) count(msg string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, line := range strings.Split(l.b.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["message"] == msg {
			n++
		}
	}
	return n
}

// wait waits until a line has message msg.
func (l *logBuffer) wait(t *testing.T, msg string) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for l.count(msg) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no %q line within %s; log:\n%s", msg, waitTimeout, l)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// fixture is a policy folder, a running server and its reloader. The
// policy has rule "api" on 127.0.0.1:port, with the certificate and key
// in the folder certs/, in front of backend one or two, which answer
// with their name.
type fixture struct {
	dir, file string
	port      int
	one, two  string // backend addresses
	srv       *proxy.Server
	r         *Reloader
	log       *logBuffer

	mu      sync.Mutex
	reloads []seen
}

// seen is a reload OnReload heard of.
type seen struct {
	applied bool
	rules   []string // of the policy running after it
}

// policyText is the fixture's policy with the pair in certDir, relative
// to the policy's folder, and backend.
func policyText(port int, certDir, backend string) string {
	return fmt.Sprintf(`
environment "web" {
  certificate = "%[1]s/server.pem"
  private_key = "%[1]s/server-key.pem"
}
inbound "api" {
  port        = %[2]d
  address     = "127.0.0.1"
  environment = "web"
  backend     = %[3]q
}
`, certDir, port, backend)
}

// policy is policyText on the fixture's port.
func (f *fixture) policy(certDir, backend string) string {
	return policyText(f.port, certDir, backend)
}

// start lays out the fixture with a fresh pair in certs/ and runs it.
// Each opt adjusts the fixture before Run.
func start(t *testing.T, watch Watch, opts ...func(*fixture)) *fixture {
	t.Helper()
	return startIn(t, watch, "certs", nil, opts...)
}

// startIn is start with the policy naming the pair in certDir, after
// layout has rearranged the folder, when not nil.
func startIn(t *testing.T, watch Watch, certDir string, layout func(t *testing.T, dir string),
	opts ...func(*fixture)) *fixture {
	t.Helper()
	dir := t.TempDir()
	f := &fixture{dir: dir, file: filepath.Join(dir, "policy.hcl"), port: testnet.FreePort(t),
		one: testnet.NamedBackend(t, "one"), two: testnet.NamedBackend(t, "two"), log: &logBuffer{}}
	newPair(t).write(t, filepath.Join(dir, "certs"))
	if layout != nil {
		layout(t, dir)
	}
	f.write(t, f.policy(certDir, f.one))
	p, files, diags := policy.LoadFiles(f.file)
	if diags.HasErrors() {
		t.Fatal(policy.FormatDiagnostics(diags))
	}
	log := zerolog.New(f.log).Level(zerolog.DebugLevel)
	f.srv = proxy.New(p, log)
	if err := f.srv.Start(); err != nil {
		t.Fatal(err)
	}
	f.r = New(f.file, f.srv, p, files, watch, log)
	f.r.OnReload = f.record
	for _, opt := range opts {
		opt(f)
	}
	f.run(t)
	if watch != WatchOff {
		// Changes the test makes must come after Run's first look at the
		// files, or that look alone would find them.
		f.log.wait(t, msgUnchanged)
	}
	return f
}

// run runs the reloader until the test ends.
func (f *fixture) run(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		f.r.Run(ctx)
		close(done)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		f.srv.Close()
	})
}

// record notes a reload and the rules running after it.
func (f *fixture) record(applied bool) {
	_, p := f.srv.Generation()
	var rules []string
	for _, r := range p.Inbound {
		rules = append(rules, r.Name)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reloads = append(f.reloads, seen{applied, rules})
}

// seen returns the reloads so far.
func (f *fixture) seen() []seen {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]seen(nil), f.reloads...)
}

// waitRejected waits until n reloads were rejected.
func (f *fixture) waitRejected(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for time.Now().Before(deadline) {
		got := 0
		for _, s := range f.seen() {
			if !s.applied {
				got++
			}
		}
		if got >= n {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("rejected reloads: got fewer than %d; log:\n%s", n, f.log)
}

// write replaces the policy by rename, as editors save.
func (f *fixture) write(t *testing.T, text string) {
	t.Helper()
	renameOver(t, f.file, []byte(text))
}

// renameOver writes data beside path and renames it over path.
func renameOver(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// writeInPlace truncates path and writes data into the same file.
func writeInPlace(t *testing.T, path string, data []byte) {
	t.Helper()
	fh, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = fh.Write(data)
	if cerr := fh.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
}

// waitGeneration waits until the server runs generation n or later.
func (f *fixture) waitGeneration(t *testing.T, n uint64) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for time.Now().Before(deadline) {
		if gen, _ := f.srv.Generation(); gen >= n {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	gen, _ := f.srv.Generation()
	t.Fatalf("generation %d, want %d; log:\n%s", gen, n, f.log)
}

// answer is what a client saw through the fixture's rule.
type answer struct {
	backend string // the backend's name
	serial  string // of the certificate served
}

// hello connects over TLS and returns what it saw.
func (f *fixture) hello() (answer, error) {
	d := &net.Dialer{Timeout: time.Second}
	// The pairs are self-signed and change: the test compares serials.
	cfg := &tls.Config{InsecureSkipVerify: true}
	c, err := tls.DialWithDialer(d, "tcp", fmt.Sprintf("127.0.0.1:%d", f.port), cfg)
	if err != nil {
		return answer{}, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(waitTimeout))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return answer{}, err
	}
	serial := c.ConnectionState().PeerCertificates[0].SerialNumber.Text(16)
	return answer{strings.TrimSpace(line), serial}, nil
}

// waitServes makes connections until one sees what ok accepts. Each must
// succeed: the port stays through every reload.
func (f *fixture) waitServes(t *testing.T, what string, ok func(answer) bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	var last answer
	for time.Now().Before(deadline) {
		a, err := f.hello()
		if err != nil {
			t.Fatalf("connection while waiting for %s: %v; log:\n%s", what, err, f.log)
		}
		if ok(a) {
			return
		}
		last = a
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("got %+v after %s, want %s; log:\n%s", last, waitTimeout, what, f.log)
}

// waitSerial waits until clients see the certificate of p.
func (f *fixture) waitSerial(t *testing.T, p pair) {
	t.Helper()
	f.waitServes(t, "serial "+p.serial, func(a answer) bool { return a.serial == p.serial })
}

// waitBackend waits until clients reach the backend called name.
func (f *fixture) waitBackend(t *testing.T, name string) {
	t.Helper()
	f.waitServes(t, "backend "+name, func(a answer) bool { return a.backend == name })
}

// pair is a self-signed server certificate and its key, in PEM.
type pair struct {
	cert, key []byte
	serial    string // hex
}

// newPair makes a pair with a serial of its own.
func newPair(t *testing.T) pair {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 100))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial.Add(serial, big.NewInt(1)),
		Subject:      pkix.Name{CommonName: "reload test"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pair{
		cert:   pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		key:    pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}),
		serial: tmpl.SerialNumber.Text(16),
	}
}

// write puts the pair into dir as server.pem and server-key.pem, making
// dir if needed.
func (p pair) write(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{"server.pem": p.cert, "server-key.pem": p.key} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// writeInPlace rewrites the pair's files in dir, each in its inode.
func (p pair) writeInPlace(t *testing.T, dir string) {
	t.Helper()
	writeInPlace(t, filepath.Join(dir, "server.pem"), p.cert)
	writeInPlace(t, filepath.Join(dir, "server-key.pem"), p.key)
}

// TestWatcherUnavailable: when inotify cannot be set up, attlsd says so
// and notices changes by polling.
func TestWatcherUnavailable(t *testing.T) {
	newWatcher = func() (*fsnotify.Watcher, error) { return nil, errors.New("too many open files") }
	defer func() { newWatcher = fsnotify.NewWatcher }()
	f := start(t, WatchAuto)
	f.write(t, f.policy("certs", f.two))
	f.waitBackend(t, "two")
	if f.log.count("cannot watch policy files; polling them instead (SIGHUP still reloads)") != 1 {
		t.Errorf("no warning that the watcher is unavailable; log:\n%s", f.log)
	}
}

func TestWatchOffNeedsTrigger(t *testing.T) {
	f := start(t, WatchOff)
	f.write(t, f.policy("certs", f.two))
	time.Sleep(3 * pollInterval / 2)
	if gen, _ := f.srv.Generation(); gen != 1 {
		t.Fatalf("--watch off: a file change was applied (generation %d)", gen)
	}
	f.r.Trigger()
	f.waitBackend(t, "two")
}
