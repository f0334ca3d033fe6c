package memtrim

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// TestRunFreesOncePerBurst: memory is returned once after connections
// stop arriving, not while they arrive and not again while it stays quiet.
func TestRunFreesOncePerBurst(t *testing.T) {
	var accepted, frees atomic.Uint64
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		Run(ctx, accepted.Load, 20*time.Millisecond, func() { frees.Add(1) })
		close(done)
	}()
	t.Cleanup(func() { cancel(); <-done })

	// A burst: connections keep arriving for several periods.
	for range 10 {
		accepted.Add(1)
		time.Sleep(5 * time.Millisecond)
	}
	if got := frees.Load(); got > 1 {
		t.Fatalf("during the burst: got %d frees, want at most 1", got)
	}
	waitFor(t, func() bool { return frees.Load() >= 1 })
	time.Sleep(100 * time.Millisecond) // quiet: five more periods
	if got := frees.Load(); got != 1 {
		t.Fatalf("after one burst and quiet: got %d frees, want 1", got)
	}

	accepted.Add(3) // a second burst
	waitFor(t, func() bool { return frees.Load() == 2 })
}

func waitFor(t *testing.T, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		if ok() {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("condition not met in 5s")
}
