package proxy

import (
	"crypto/tls"
	"fmt"
	"time"
)

// A write that makes no progress is bounded by the relay's guard (see
// relay.check), not by a write deadline: a deadline that fires in the
// middle of a TLS write leaves the tls.Conn refusing every later write
// (crypto/tls conn.go, Write after a timeout), so it could not end even
// a healthy stream. Progress is judged by counters instead: the writes a
// direction has begun, the bytes it has delivered, under TLS the bytes
// each record write gave the socket, and on TCP the bytes the peer has
// acknowledged (see acked). A write still waiting while none of them has
// moved for the write timeout ends the relay. The guard reads them about
// twice per timeout while writes go on, and not at all while the relay
// is quiet.

// stallError ends a relay whose write made no progress for too long.
type stallError struct {
	to string // "backend", "client", "app", "endpoint"
	d  time.Duration
}

func (e *stallError) Error() string {
	return fmt.Sprintf("write timeout: %s took no byte for %s", e.to, e.d)
}

// stallMark is what the guard last saw of one direction's writes, and
// when that changed.
type stallMark struct {
	writes uint64
	bytes  int64
	at     time.Time
}

// watchWrites has the guard watch writes from now on, if the relay has a
// write timeout and the guard does not watch already. It runs at each
// write; once watching, it costs one atomic load.
func (r *relay) watchWrites() {
	if r.t.write <= 0 || r.watching.Load() {
		return
	}
	r.guardMu.Lock()
	defer r.guardMu.Unlock()
	if r.aborted.Load() || r.watching.Load() {
		return
	}
	r.watching.Store(true)
	r.armGuard(time.Now().Add(r.t.write / 2))
}

// startWrite marks d as in a write that may wait on its peer, until
// endWrite.
func (d *direction) startWrite() {
	d.writes.Add(1)
	d.busy.Store(true)
	d.rl.watchWrites()
}

// endWrite marks d's write as done.
func (d *direction) endWrite() { d.busy.Store(false) }

// progress returns the counters by which d's writes are judged; bytes
// sums those that only grow.
func (d *direction) progress() (writes uint64, bytes int64) {
	bytes = d.n.Load() + acked(d.dst.conn)
	if tc, ok := d.dst.conn.(*tls.Conn); ok {
		if s, ok := tc.NetConn().(*sock); ok {
			bytes += s.written.Load()
		}
	}
	return d.writes.Load(), bytes
}

// checkWrites judges the writes at now, with r.guardMu held. It returns
// the stall that ends the relay, or when to look again (zero: the relay
// wrote nothing since the last look and waits on no write, so the guard
// stops watching until the next write).
//
// It stops watching before it reads the counters: a write that begins
// after they are read then finds the guard not watching and sets it
// (watchWrites, which waits for guardMu), and one that began before is
// seen in them.
func (r *relay) checkWrites(now time.Time) (time.Time, error) {
	r.watching.Store(false)
	next, active := now.Add(r.t.write/2), false
	for i := range r.dirs {
		d, m := &r.dirs[i], &r.marks[i]
		writes, bytes := d.progress()
		if writes != m.writes || bytes != m.bytes {
			*m, active = stallMark{writes, bytes, now}, true
			continue
		}
		if !d.busy.Load() {
			continue
		}
		active = true
		if now.Sub(m.at) >= r.t.write {
			return time.Time{}, &stallError{to: d.dst.name, d: r.t.write}
		}
		next = earliest(next, m.at.Add(r.t.write))
	}
	if !active {
		return time.Time{}, nil
	}
	r.watching.Store(true)
	return next, nil
}

// earliest returns the earlier of a and b, a zero time being none.
func earliest(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}
