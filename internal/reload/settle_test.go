package reload

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/attlsd/attlsd/internal/testnet"
)

// TestTriggerDuringReload holds a reload open after it read the files,
// writes a new policy and triggers, as SIGHUP does: once the held reload
// ends, another one reads and applies the new policy.
func TestTriggerDuringReload(t *testing.T) {
	held, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	f := start(t, WatchOff, func(f *fixture) {
		record := f.r.OnReload
		f.r.OnReload = func(applied bool) {
			record(applied)
			once.Do(func() {
				close(held)
				<-release
			})
		}
	})
	go f.r.Reload(context.Background())
	select {
	case <-held:
	case <-time.After(waitTimeout):
		t.Fatalf("no reload after Trigger; log:\n%s", f.log)
	}
	f.write(t, f.policy("certs", f.two))
	f.r.Trigger()
	close(release)
	f.waitBackend(t, "two")
}

// twoRules is the fixture's policy with backend, and a second rule
// "extra" on port2: the part a truncated policy would lack.
func (f *fixture) twoRules(backend string, port2 int) (head, tail string) {
	return f.policy("certs", backend), fmt.Sprintf(`inbound "extra" {
  port        = %d
  address     = "127.0.0.1"
  environment = "web"
  backend     = %q
}
`, port2, f.one)
}

// checkAlwaysExtra fails the test if a reload ever applied a policy
// without rule "extra".
func (f *fixture) checkAlwaysExtra(t *testing.T) {
	t.Helper()
	for i, s := range f.seen() {
		if s.applied && !slices.Contains(s.rules, "extra") {
			t.Errorf("reload %d applied rules %v: a truncated policy, want extra among them",
				i+1, s.rules)
		}
	}
}

// TestSlowWriter writes the policy in place in two pieces, holding it open
// between them for longer than a burst takes to settle; the first piece
// alone is a valid policy that lacks rule "extra". It is never applied:
// the file is loaded once its writer closed it.
func TestSlowWriter(t *testing.T) {
	f := start(t, WatchAuto)
	port2 := testnet.FreePort(t)
	head, tail := f.twoRules(f.one, port2)
	f.write(t, head+tail)
	f.waitGeneration(t, 2)

	head, tail = f.twoRules(f.two, port2)
	fh, err := os.OpenFile(f.file, os.O_WRONLY|os.O_TRUNC, 0)
	must(t, err)
	_, err = fh.WriteString(head)
	must(t, err)
	time.Sleep(4 * settleDelay)
	_, err = fh.WriteString(tail)
	must(t, err)
	must(t, fh.Close())

	f.waitBackend(t, "two")
	f.checkAlwaysExtra(t)
}

// TestChangedWhileRead appends to the policy right after a reload read
// it, before the reload looked at the files again: what was read is not
// applied, and the whole file is, once it settles. Polling finds the
// first write, so no inotify event hints at the second.
func TestChangedWhileRead(t *testing.T) {
	var tail atomic.Pointer[string]
	f := start(t, WatchPoll, func(f *fixture) {
		f.r.afterRead = func() {
			if s := tail.Swap(nil); s != nil {
				appendFile(t, f.file, *s)
			}
		}
	})
	port2 := testnet.FreePort(t)
	head, rest := f.twoRules(f.one, port2)
	f.write(t, head+rest)
	f.waitGeneration(t, 2)

	head, rest = f.twoRules(f.two, port2)
	tail.Store(&rest)
	writeInPlace(t, f.file, []byte(head))
	f.waitBackend(t, "two")
	f.checkAlwaysExtra(t)
	if tail.Load() != nil {
		t.Error("the policy was never read after the first piece was written")
	}
}

// appendFile adds s to the end of path; it runs on the reloader's
// goroutine, so it reports with t.Error.
func appendFile(t *testing.T, path, s string) {
	fh, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Error(err)
		return
	}
	defer fh.Close()
	if _, err := fh.WriteString(s); err != nil {
		t.Error(err)
	}
}
