// Package memtrim returns memory to the operating system once a burst of
// connections is over.
//
// A burst of handshakes leaves garbage behind, and the Go runtime keeps
// the freed pages for a while: it collects again only when the heap
// grows (or after two minutes), and returns pages to the system slowly.
// A sidecar that then holds thousands of idle connections would keep
// paying for the burst. Once connections stop arriving, one full
// collection and a release of every free page bring the resident size
// back to what the open connections use.
package memtrim

import (
	"context"
	"runtime/debug"
	"time"
)

// Quiet is how long no connection may arrive before memory is returned.
const Quiet = 5 * time.Second

// Run calls free once each time accepted, a count of accepted
// connections, stops moving for quiet after it moved, until ctx is done.
// free is debug.FreeOSMemory when nil.
func Run(ctx context.Context, accepted func() uint64, quiet time.Duration, free func()) {
	if free == nil {
		free = debug.FreeOSMemory
	}
	tick := time.NewTicker(quiet)
	defer tick.Stop()
	last, busy := accepted(), false
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		n := accepted()
		switch {
		case n != last:
			last, busy = n, true
		case busy:
			busy = false
			free()
		}
	}
}
