package proxy

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// bufSize is one TLS record's largest plaintext (RFC 8446 5.1), so one
// read from a tls.Conn fills at most one buffer and one buffer read from
// the backend leaves as one record.
const bufSize = 16 << 10

// bufPool lends copy buffers. Pointers to slices keep Get and Put free of
// allocations (a slice header stored in an interface would escape).
var bufPool = sync.Pool{New: func() any {
	b := make([]byte, bufSize)
	return &b
}}

// side is one end of a relay.
type side struct {
	conn net.Conn
	name string // for error messages: "client", "backend", "app", "endpoint"
	// inspect, when set, sees the first bytes read from this side before
	// they are forwarded; an error refuses them and ends the relay.
	inspect func(first []byte) error
}

// timeouts bound how long a relay may stay silent. The zero value, or a
// nil pointer, bounds nothing.
//
// No deadline is touched per read: each read only notes the time, and a
// read deadline is set once per timeout period; when it fires, the pipe
// checks the last byte either way and either ends the relay or moves the
// deadline on.
type timeouts struct {
	idle      time.Duration // no byte either way for this long; 0: none
	halfClose time.Duration // no byte in the open direction once the other has ended; 0: none

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

// arm sets src's first read deadline.
func (t *timeouts) arm(src net.Conn) {
	if d, _ := t.limit(); d > 0 {
		src.SetReadDeadline(time.Now().Add(d))
	}
}

// touch notes a byte read.
func (t *timeouts) touch() { t.last.Store(int64(time.Since(t.base))) }

// expired is called when src's read deadline has passed: it returns the
// error that ends the relay, or moves the deadline to the end of the
// current allowance and returns nil.
func (t *timeouts) expired(src net.Conn) error {
	d, what := t.limit()
	if d <= 0 {
		src.SetReadDeadline(time.Time{})
		return nil
	}
	last := t.base.Add(time.Duration(t.last.Load()))
	if time.Since(last) >= d {
		return &silenceError{what, d}
	}
	src.SetReadDeadline(last.Add(d))
	return nil
}

// halfClosed switches the open direction, read from src, to the
// half-close timeout.
func (t *timeouts) halfClosed(src net.Conn) {
	t.ended.Store(true)
	t.touch()
	if t.halfClose > 0 {
		src.SetReadDeadline(time.Now().Add(t.halfClose))
	} else {
		src.SetReadDeadline(time.Time{})
	}
}

// relay copies both ways between client and backend until both directions
// have ended. An end of stream in one direction is passed on as a
// half-close, so the other direction keeps flowing (a client that sends a
// request and then FIN still gets the whole response). Any error in
// either direction closes both connections. in and out count the bytes
// delivered to the backend and to the client. t, when not nil, bounds
// silence.
func relay(client, backend side, in, out *atomic.Int64, t *timeouts) error {
	if t == nil {
		t = &timeouts{}
	}
	t.base = time.Now()
	var once sync.Once
	abort := func() {
		once.Do(func() {
			client.conn.Close()
			backend.conn.Close()
		})
	}

	errc := make(chan error, 1)
	go func() {
		err := pipe(backend, client, in, t)
		if err != nil {
			abort()
		} else {
			t.halfClosed(backend.conn)
		}
		errc <- err
	}()
	errOut := pipe(client, backend, out, t)
	if errOut != nil {
		abort()
	} else {
		t.halfClosed(client.conn)
	}
	errIn := <-errc
	abort()

	// The first failure is the cause; the other side then sees its
	// connection closed under it.
	if errIn != nil && !errors.Is(errIn, net.ErrClosed) {
		return errIn
	}
	if errOut != nil && !errors.Is(errOut, net.ErrClosed) {
		return errOut
	}
	return errors.Join(errIn, errOut)
}

// pipe copies src to dst with a pooled buffer until src ends, then
// half-closes dst. It returns nil after a clean end of stream. t, when
// not nil, bounds silence.
func pipe(dst, src side, n *atomic.Int64, t *timeouts) error {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	if t == nil {
		t = &timeouts{base: time.Now()}
	}
	t.arm(src.conn)

	for {
		nr, rerr := src.conn.Read(buf)
		if nr > 0 {
			t.touch()
			if src.inspect != nil {
				if err := src.inspect(buf[:nr]); err != nil {
					return err
				}
				src.inspect = nil
			}
			nw, werr := dst.conn.Write(buf[:nr])
			n.Add(int64(nw))
			if werr != nil {
				return fmt.Errorf("write to %s: %w", dst.name, werr)
			}
		}
		switch {
		case rerr == nil:
		case rerr == io.EOF:
			return closeWrite(dst)
		case errors.Is(rerr, os.ErrDeadlineExceeded):
			if err := t.expired(src.conn); err != nil {
				return err
			}
		default:
			return fmt.Errorf("read from %s: %w", src.name, rerr)
		}
	}
}

// closeWrite ends one direction of dst. On TLS it sends close_notify and
// then a TCP FIN: TLS 1.3 lets the peer keep writing after close_notify
// (RFC 8446 6.1), and clients that ignore close_notify still see EOF.
// A peer that has already gone entirely needs no half-close: that is how
// most clients end, so it is not an error.
func closeWrite(dst side) error {
	c := dst.conn
	if tc, ok := c.(*tls.Conn); ok {
		if err := tc.CloseWrite(); err != nil && !peerGone(err) {
			return fmt.Errorf("close_notify to %s: %w", dst.name, err)
		}
		c = tc.NetConn()
	}
	hc, ok := c.(interface{ CloseWrite() error })
	if !ok {
		return nil
	}
	if err := hc.CloseWrite(); err != nil && !peerGone(err) {
		return fmt.Errorf("half-close %s: %w", dst.name, err)
	}
	return nil
}

// peerGone reports errors that mean the peer closed or reset its whole
// connection.
func peerGone(err error) bool {
	return errors.Is(err, syscall.ENOTCONN) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, syscall.ECONNRESET)
}
