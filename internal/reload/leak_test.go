package reload

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"
	"weak"

	"github.com/attlsd/attlsd/internal/testnet"
	"github.com/attlsd/attlsd/policy"
)

// Bounds of TestNoLeakAcrossReloads. One generation of the test policy
// costs about 5 KiB of heap (its certificate, TLS configuration, rules),
// so the 250 generations applied would pass heapSlack some five times
// over if they were kept, and so would their certificates alone.
const (
	leakWarmup  = 60  // reloads before the baseline is taken
	leakReloads = 300 // reloads measured
	heapSlack   = 256 << 10
)

// leakStep changes the policy files in one of the ways a reload sees,
// step by step: nothing, the backend, a second port added or removed,
// the certificate moved to another folder (a watch added and one
// removed), the certificate rotated, a syntax error. Every sixth step
// the files are back as they started, but for the certificate's content.
type leakStep struct {
	f       *fixture
	port2   int
	certDir string
	backend string
	extra   bool
}

// next makes change i, and reports whether the reload should be
// rejected.
func (s *leakStep) next(t *testing.T, i int) (reject bool) {
	t.Helper()
	switch i % 6 {
	case 1:
		s.backend = map[string]string{s.f.one: s.f.two, s.f.two: s.f.one}[s.backend]
	case 2:
		s.extra = !s.extra
	case 3:
		s.certDir = map[string]string{"certs": "certs-b", "certs-b": "certs"}[s.certDir]
	case 4:
		p := newPair(t)
		renameOver(t, filepath.Join(s.f.dir, s.certDir, "server.pem"), p.cert)
		renameOver(t, filepath.Join(s.f.dir, s.certDir, "server-key.pem"), p.key)
	case 5:
		s.f.write(t, "inbound {")
		return true
	}
	text := s.f.policy(s.certDir, s.backend)
	if s.extra {
		_, tail := s.f.twoRules(s.backend, s.port2)
		text += tail
	}
	s.f.write(t, text)
	return false
}

// usage is what the process holds.
type usage struct {
	goroutines, fds, watches int
	heap                     uint64
}

// measure collects garbage and returns what the process holds.
func (f *fixture) measure(t *testing.T) usage {
	t.Helper()
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fds, err := os.ReadDir("/proc/self/fd")
	must(t, err)
	return usage{goroutines: runtime.NumGoroutine(), fds: len(fds),
		watches: len(f.r.watcher.WatchList()), heap: ms.HeapAlloc}
}

// openConn opens a TLS connection through the fixture's rule, reads the
// backend's name and leaves it open.
func (f *fixture) openConn(t *testing.T) *tls.Conn {
	t.Helper()
	c, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", f.port),
		&tls.Config{InsecureSkipVerify: true})
	must(t, err)
	c.SetDeadline(time.Now().Add(time.Minute))
	if _, err := bufio.NewReader(c).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	return c
}

// echoes checks that c still carries bytes both ways.
func echoes(t *testing.T, c *tls.Conn) {
	t.Helper()
	io.WriteString(c, "still here")
	buf := make([]byte, len("still here"))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "still here" {
		t.Errorf("connection opened before the reloads: read %q, %v; want the echo", buf, err)
	}
}

// TestNoLeakAcrossReloads reloads 360 times, through every kind of change
// (see leakStep), with connections now and then and two that stay open
// across most reloads. After the connections close, goroutines, file
// descriptors, inotify watches and the heap are back at their level, and
// no old generation's policy is still reachable.
func TestNoLeakAcrossReloads(t *testing.T) {
	f := start(t, WatchAuto)
	f.log.mute() // the log would grow with every reload
	watches := len(f.r.watcher.WatchList())
	newPair(t).write(t, filepath.Join(f.dir, "certs-b"))
	s := &leakStep{f: f, port2: testnet.FreePort(t), certDir: "certs", backend: f.one}
	firstGen := f.generation()
	long := []*tls.Conn{f.openConn(t)}

	ctx := context.Background()
	var gens []generation
	run := func(from, to int) {
		for i := from; i < to; i++ {
			reject := s.next(t, i)
			if _, err := f.r.Reload(ctx); (err != nil) != reject {
				t.Fatalf("reload %d: got error %v, want rejected %t", i, err, reject)
			}
			if !reject {
				gens = append(gens, f.generation())
			}
			if i%10 == 0 {
				if _, err := f.hello(); err != nil {
					t.Fatalf("connection after reload %d: %v", i, err)
				}
			}
			if i == leakWarmup+leakReloads/2 {
				long = append(long, f.openConn(t))
			}
		}
	}
	run(0, leakWarmup)
	before := f.measure(t)
	run(leakWarmup, leakWarmup+leakReloads)

	if firstGen.rule.Value() == nil {
		t.Error("the rule of generation 1 collected while a connection of it is open")
	}
	for _, c := range long {
		echoes(t, c)
		c.Close()
	}
	after := f.settle(t, before)
	t.Logf("%d reloads: %+v before, %+v after", leakReloads, before, after)
	if after.goroutines > before.goroutines || after.fds > before.fds {
		t.Errorf("after %d reloads: got %d goroutines, %d fds; want %d, %d",
			leakReloads, after.goroutines, after.fds, before.goroutines, before.fds)
	}
	if before.watches != watches || after.watches != watches {
		t.Errorf("inotify watches: got %d after warming up and %d at the end, want %d "+
			"as at the start, with the same files", before.watches, after.watches, watches)
	}
	if after.heap > before.heap+heapSlack {
		t.Errorf("heap after %d reloads: got %d KiB, want at most %d KiB (%d before)",
			leakReloads, after.heap>>10, (before.heap+heapSlack)>>10, before.heap>>10)
	}
	// A connection's last goroutine may still be returning when its count
	// drops; give the collector a few rounds.
	old := append(gens[:len(gens)-1], firstGen)
	live := reachable(old)
	for deadline := time.Now().Add(waitTimeout); live > 0 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		runtime.GC()
		live = reachable(old)
	}
	if live > 0 {
		t.Errorf("old generations still reachable after their connections closed: "+
			"got %d, want 0", live)
	}
}

// reachable counts the generations whose policy or rule is still alive.
func reachable(gens []generation) int {
	live := 0
	for _, g := range gens {
		if g.policy.Value() != nil || g.rule.Value() != nil {
			live++
		}
	}
	return live
}

// generation points weakly at what a generation consists of.
type generation struct {
	policy weak.Pointer[policy.Policy]
	rule   weak.Pointer[policy.Rule] // what a connection of it holds
}

// generation returns the running generation.
func (f *fixture) generation() generation {
	_, p := f.srv.Generation()
	return generation{weak.Make(p), weak.Make(p.Inbound[0])}
}

// settle waits for the connections to end and the goroutines to come
// back to their number in before, and measures.
func (f *fixture) settle(t *testing.T, before usage) usage {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		u := f.measure(t)
		if f.srv.Open() == 0 && u.goroutines <= before.goroutines || time.Now().After(deadline) {
			return u
		}
		time.Sleep(20 * time.Millisecond)
	}
}
