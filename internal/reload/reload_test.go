package reload

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/rs/zerolog"

	"github.com/attlsd/attlsd/certs"
	"github.com/attlsd/attlsd/policy"
	"github.com/attlsd/attlsd/proxy"
)

// logBuffer collects JSON log lines from several goroutines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
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

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// fixture is a policy folder with the dev PKI and a running server and
// reloader.
type fixture struct {
	dir, file string
	srv       *proxy.Server
	r         *Reloader
	log       *logBuffer
}

func policyText(port int, backend string) string {
	return fmt.Sprintf(`
environment "web" {
  certificate = "certs/server.pem"
  private_key = "certs/server-key.pem"
}
inbound "api" {
  port        = %d
  address     = "127.0.0.1"
  environment = "web"
  backend     = %q
}
`, port, backend)
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func start(t *testing.T, watch Watch) *fixture {
	t.Helper()
	dir := t.TempDir()
	if _, err := certs.InitDev(filepath.Join(dir, "certs"), nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	f := &fixture{dir: dir, file: filepath.Join(dir, "policy.hcl"), log: &logBuffer{}}
	f.write(t, policyText(freePort(t), "127.0.0.1:9"))
	p, files, diags := policy.LoadFiles(f.file)
	if diags.HasErrors() {
		t.Fatal(policy.FormatDiagnostics(diags))
	}
	log := zerolog.New(f.log)
	f.srv = proxy.New(p, log)
	if err := f.srv.Start(); err != nil {
		t.Fatal(err)
	}
	f.r = New(f.file, f.srv, p, files, watch, log)
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
	return f
}

func (f *fixture) write(t *testing.T, text string) {
	t.Helper()
	tmp := f.file + ".tmp"
	if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, f.file); err != nil {
		t.Fatal(err)
	}
}

// waitGeneration waits until the server runs generation n or later.
func (f *fixture) waitGeneration(t *testing.T, n uint64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if gen, _ := f.srv.Generation(); gen >= n {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	gen, _ := f.srv.Generation()
	t.Fatalf("generation %d, want %d; log:\n%s", gen, n, f.log)
}

// TestWatcherUnavailable: when inotify cannot be set up, attlsd says so
// and notices changes by polling.
func TestWatcherUnavailable(t *testing.T) {
	newWatcher = func() (*fsnotify.Watcher, error) { return nil, errors.New("too many open files") }
	defer func() { newWatcher = fsnotify.NewWatcher }()
	f := start(t, WatchAuto)
	f.write(t, policyText(freePort(t), "127.0.0.1:10"))
	f.waitGeneration(t, 2)
	if f.log.count("cannot watch policy files; polling them instead (SIGHUP still reloads)") != 1 {
		t.Errorf("no warning that the watcher is unavailable; log:\n%s", f.log)
	}
}

func TestWatchOffNeedsTrigger(t *testing.T) {
	f := start(t, WatchOff)
	f.write(t, policyText(freePort(t), "127.0.0.1:10"))
	time.Sleep(3 * pollInterval / 2)
	if gen, _ := f.srv.Generation(); gen != 1 {
		t.Fatalf("--watch off: a file change was applied (generation %d)", gen)
	}
	f.r.Trigger()
	f.waitGeneration(t, 2)
}

// TestNoLeakAcrossReloads: hundreds of reloads that change listeners
// leave no goroutine behind.
func TestNoLeakAcrossReloads(t *testing.T) {
	f := start(t, WatchOff)
	f.r.Trigger()
	f.waitGeneration(t, 2)
	time.Sleep(50 * time.Millisecond)
	before := runtime.NumGoroutine()
	for i := range 300 {
		// Every other reload moves the port, so listeners are bound and
		// closed too.
		if i%2 == 0 {
			f.write(t, policyText(freePort(t), "127.0.0.1:9"))
		}
		f.r.Trigger()
		f.waitGeneration(t, uint64(3+i))
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if after := runtime.NumGoroutine(); after > before {
		t.Errorf("goroutines: %d before 300 reloads, %d after", before, after)
	}
}
