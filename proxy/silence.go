package proxy

import (
	"fmt"
	"sync/atomic"
	"time"
)

// parkAfter is how long a relay may stay silent before its directions
// park: their goroutines end, and the parker starts them again when a
// byte arrives. A second keeps request and response traffic on running
// goroutines, where a wake-up costs nothing extra.
const parkAfter = time.Second

// timeouts bound how long a relay may stay silent. The zero value bounds
// nothing and parks after parkAfter.
//
// No deadline is touched per read: each read only notes the time, and a
// read deadline is set once per period; when it fires, the direction
// checks the last byte either way and ends the relay, parks, or moves the
// deadline on.
type timeouts struct {
	idle      time.Duration // no byte either way for this long; 0: none
	halfClose time.Duration // no byte in the open direction once the other has ended; 0: none
	write     time.Duration // a write without progress for this long (see stall.go); 0: none
	park      time.Duration // silence before the directions park; 0: parkAfter

	base  time.Time    // relay start, for monotonic times
	last  atomic.Int64 // since base, of the last byte read either way
	ended atomic.Bool  // one direction has ended
}

// silenceError ends a relay that a timeout found silent.
type silenceError struct {
	what string
	d    time.Duration
}

func (e *silenceError) Error() string {
	return fmt.Sprintf("%s: no byte for %s", e.what, e.d)
}

// limit returns the silence allowed now and what it is called.
func (t *timeouts) limit() (time.Duration, string) {
	if t.ended.Load() {
		return t.halfClose, "half-close timeout"
	}
	return t.idle, "idle timeout"
}

// start begins the count of silence.
func (t *timeouts) start() {
	t.base = time.Now()
	t.last.Store(0)
}

// touch notes a byte read.
func (t *timeouts) touch() { t.last.Store(int64(time.Since(t.base))) }

// halfClosed switches the open direction to the half-close timeout.
func (t *timeouts) halfClosed() {
	t.ended.Store(true)
	t.touch()
}

// verdict is what a direction does about silence until its next check.
type verdict struct {
	until time.Time     // read deadline of the next check; zero: none
	park  bool          // park now
	wake  time.Duration // when parking: wake this soon to end the relay; 0: never
}

// next decides, at now, what a direction does about the silence so far:
// the relay ends (a silenceError), the direction parks, or it reads on
// until the returned deadline. A direction parks once neither the relay
// nor it, since it started running at since, has seen a byte for
// parkAfter; canPark is false where parking is not available.
func (t *timeouts) next(now, since time.Time, canPark bool) (verdict, error) {
	last := t.base.Add(time.Duration(t.last.Load()))
	d, what := t.limit()
	if d > 0 && now.Sub(last) >= d {
		return verdict{}, &silenceError{what, d}
	}
	quietSince := last
	if since.After(last) {
		quietSince = since
	}
	park := t.park
	if park <= 0 {
		park = parkAfter
	}
	if canPark && now.Sub(quietSince) >= park {
		v := verdict{park: true}
		if d > 0 {
			v.wake = d - now.Sub(last)
		}
		return v, nil
	}
	var v verdict
	if canPark {
		v.until = quietSince.Add(park)
	}
	if d > 0 && (v.until.IsZero() || last.Add(d).Before(v.until)) {
		v.until = last.Add(d)
	}
	return v, nil
}

// check ends the relay if it has been silent for the limit in force, or
// if a write has made no progress for the write timeout, and otherwise
// sets the guard to look again when a limit would be reached. The
// directions check silence themselves when a read deadline passes or
// their parker timer fires, but a direction blocked in a write does
// neither: a peer that reads nothing, with an echoing or pipelining peer
// at the other end, blocks both directions' writes, and a half-closed
// relay's open direction can block the same way. The guard bounds those
// too. It runs at the start, on a half-close (which changes the limit),
// and then on its own timer, about once per limit, and twice per write
// timeout while writes go on (see watchWrites).
func (r *relay) check() {
	if err := r.rearm(); err != nil {
		r.abort() // outside guardMu, which guards only the guard and its result
	}
}

// checkSilence is check after a half-close, which changes the silence
// limit in force: write progress waits for the guard's next look, since
// judging it queries each socket (acked).
func (r *relay) checkSilence() {
	r.guardMu.Lock()
	var err error
	if !r.aborted.Load() {
		var v verdict
		if v, err = r.t.next(time.Now(), time.Time{}, false); err != nil {
			r.silent = err
		} else if !v.until.IsZero() {
			r.armGuard(v.until) // keeps an earlier look for writes
		}
	}
	r.guardMu.Unlock()
	if err != nil {
		r.abort()
	}
}

// rearm sets the guard for the limits in force, or returns the error
// that ends the relay.
func (r *relay) rearm() error {
	r.guardMu.Lock()
	defer r.guardMu.Unlock()
	if r.aborted.Load() {
		return nil
	}
	now := time.Now()
	until, err := r.nextCheck(now)
	if err != nil {
		r.silent = err
		return err
	}
	r.guardAt = time.Time{}
	if !until.IsZero() { // else no limit in force
		r.armGuard(until)
	}
	return nil
}

// nextCheck judges silence and writes at now, with r.guardMu held, and
// returns when to look again (zero: no need) or the error that ends the
// relay.
func (r *relay) nextCheck(now time.Time) (time.Time, error) {
	v, err := r.t.next(now, time.Time{}, false)
	if err != nil || !r.watching.Load() {
		return v.until, err
	}
	next, err := r.checkWrites(now)
	return earliest(v.until, next), err
}

// armGuard makes the guard fire at at, unless it fires sooner already.
// r.guardMu must be held.
func (r *relay) armGuard(at time.Time) {
	if !r.guardAt.IsZero() && !r.guardAt.After(at) {
		return
	}
	r.guardAt = at
	if r.guard == nil {
		r.guard = time.AfterFunc(time.Until(at), r.check)
	} else {
		r.guard.Reset(time.Until(at))
	}
}

// stopGuard stops the guard of an ended relay, so that its timer does not
// keep the relay in memory until the limit.
func (r *relay) stopGuard() {
	r.guardMu.Lock()
	if r.guard != nil {
		r.guard.Stop()
	}
	r.guardMu.Unlock()
}
