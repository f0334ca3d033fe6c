package proxy

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// parkedRelay runs a relay over loopback TCP pairs with a short park
// period and returns the outer ends, the relay, and its result.
func parkedRelay(t *testing.T, to *timeouts) (client, backend *net.TCPConn, r *relay, done chan error) {
	t.Helper()
	if !parking.available() {
		t.Skip("parking is not available here")
	}
	client, proxyClient := tcpPair(t)
	proxyBackend, backend := tcpPair(t)
	done = make(chan error, 1)
	var in, out atomic.Int64
	r = newRelay(side{conn: proxyClient, name: "client"}, side{conn: proxyBackend, name: "backend"},
		&in, &out, to, func(err error) { done <- err })
	go r.run()
	return client, backend, r, done
}

// isParked reports whether d is in the parker.
func isParked(d *direction) bool {
	parking.mu.Lock()
	defer parking.mu.Unlock()
	_, ok := parking.parked[d]
	return ok
}

// waitParked waits until both directions of r are parked.
func waitParked(t *testing.T, r *relay) {
	t.Helper()
	waitUntil(t, "both directions parked", func() bool {
		return isParked(&r.dirs[0]) && isParked(&r.dirs[1])
	})
}

func waitUntil(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		if ok() {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("not reached in 5s: %s", what)
}

// echoOnce sends msg from one end and reads it at the other.
func echoOnce(t *testing.T, from, to net.Conn, msg []byte) {
	t.Helper()
	if _, err := from.Write(msg); err != nil {
		t.Fatalf("write: %v", err)
	}
	got := make([]byte, len(msg))
	to.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(to, got); err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("read: got %q, %v; want %q", got, err, msg)
	}
}

// TestRelayParks: a quiet relay holds no goroutine, and bytes in either
// direction wake it with nothing lost.
func TestRelayParks(t *testing.T) {
	client, backend, r, done := parkedRelay(t, &timeouts{park: 50 * time.Millisecond})
	echoOnce(t, client, backend, []byte("hello"))
	echoOnce(t, backend, client, []byte("world"))
	waitParked(t, r)

	const size = 4 << 20
	up, down := randomBytes(t, size), randomBytes(t, size)
	var gotUp, gotDown []byte
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); client.Write(up); client.CloseWrite() }()
	go func() { defer wg.Done(); gotUp, _ = io.ReadAll(backend) }()
	go func() { defer wg.Done(); gotDown, _ = io.ReadAll(client) }()
	// The upload wakes one direction; the other is still parked when the
	// download starts.
	time.Sleep(100 * time.Millisecond)
	backend.Write(down)
	backend.CloseWrite()
	wg.Wait()

	if sha256.Sum256(gotUp) != sha256.Sum256(up) || sha256.Sum256(gotDown) != sha256.Sum256(down) {
		t.Errorf("after parking: got %d and %d bytes with other digests, want %d each way",
			len(gotUp), len(gotDown), size)
	}
	if err := <-done; err != nil {
		t.Errorf("relay: got %v, want nil", err)
	}
}

// TestParkedRelayHoldsNoGoroutine: parking ends both directions'
// goroutines.
func TestParkedRelayHoldsNoGoroutine(t *testing.T) {
	base := runtime.NumGoroutine()
	const n = 20
	relays := make([]*relay, n)
	for i := range relays {
		client, backend, r, _ := parkedRelay(t, &timeouts{park: 50 * time.Millisecond})
		echoOnce(t, client, backend, []byte("ping"))
		relays[i] = r
	}
	for _, r := range relays {
		waitParked(t, r)
	}
	// 20 relays would hold 40 goroutines unparked; allow for the test's
	// own helpers and the parker's loop.
	if got := runtime.NumGoroutine() - base; got > 5 {
		t.Errorf("got %d more goroutines with %d relays parked, want none per relay", got, n)
	}
}

// TestParkedRelayTimeouts: a parked relay still ends at its silence
// limits, and a half-closed one that keeps sending is not cut.
func TestParkedRelayTimeouts(t *testing.T) {
	t.Run("idle timeout", func(t *testing.T) {
		client, backend, r, done := parkedRelay(t,
			&timeouts{park: 30 * time.Millisecond, idle: 300 * time.Millisecond})
		echoOnce(t, client, backend, []byte("ping"))
		waitParked(t, r)
		wantSilence(t, done, "idle timeout")
	})
	t.Run("half-close timeout", func(t *testing.T) {
		client, backend, r, done := parkedRelay(t,
			&timeouts{park: 30 * time.Millisecond, halfClose: 300 * time.Millisecond})
		echoOnce(t, client, backend, []byte("request"))
		waitParked(t, r)
		client.CloseWrite()
		backend.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadAll(backend); err != nil {
			t.Fatalf("backend: got %v, want EOF after the client's FIN", err)
		}
		// Slow but active, well past the timeout in total: not cut.
		for range 8 {
			if _, err := backend.Write([]byte("chunk")); err != nil {
				t.Fatalf("backend write while active: %v", err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		wantSilence(t, done, "half-close timeout")
		got, _ := io.ReadAll(client)
		if want := bytes.Repeat([]byte("chunk"), 8); !bytes.Equal(got, want) {
			t.Errorf("client got %q, want %q", got, want)
		}
	})
}

func wantSilence(t *testing.T, done chan error, what string) {
	t.Helper()
	var se *silenceError
	select {
	case err := <-done:
		if !errors.As(err, &se) || se.what != what {
			t.Fatalf("relay ended with %v, want a %s", err, what)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("a silent parked relay outlived its %s", what)
	}
}

// TestAbortEndsParkedRelay: closing a relay whose directions are parked
// (as Server.Close does) ends it.
func TestAbortEndsParkedRelay(t *testing.T) {
	client, backend, r, done := parkedRelay(t, &timeouts{park: 30 * time.Millisecond})
	echoOnce(t, client, backend, []byte("ping"))
	waitParked(t, r)
	r.abort()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("an aborted parked relay did not end")
	}
	if isParked(&r.dirs[0]) || isParked(&r.dirs[1]) {
		t.Error("an ended relay is still parked")
	}
	backend.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(backend); errors.Is(err, os.ErrDeadlineExceeded) {
		t.Error("backend connection still open after the abort")
	}
}

// TestHalfCloseBeforePark: the other direction can end between a
// direction's decision to park, taken under the idle limit (none here),
// and its park, so that the nudge of the half-close finds nothing parked
// and the direction parks with no wake-up. The half-close limit must
// still end the relay. The interleaving is replayed step by step.
func TestHalfCloseBeforePark(t *testing.T) {
	if !parking.available() {
		t.Skip("parking is not available here")
	}
	_, proxyClient := tcpPair(t)
	proxyBackend, _ := tcpPair(t)
	done := make(chan error, 1)
	var in, out atomic.Int64
	to := &timeouts{park: 30 * time.Millisecond, halfClose: 300 * time.Millisecond}
	r := newRelay(side{conn: proxyClient, name: "client"}, side{conn: proxyBackend, name: "backend"},
		&in, &out, to, func(err error) { done <- err })
	r.t.start()
	r.left.Store(2)

	d := &r.dirs[1]
	d.running = r.t.base
	time.Sleep(2 * to.park)
	v, err := r.t.next(time.Now(), d.running, true)
	if err != nil || !v.park || v.wake != 0 {
		t.Fatalf("verdict after the park period: got %+v, %v; want park, no wake-up", v, err)
	}
	r.ended(0, nil) // the client's end of stream, before d parks
	if !parking.park(d, v.wake) {
		t.Fatal("park refused")
	}
	wantSilence(t, done, "half-close timeout")
}
