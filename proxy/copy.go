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

// maxRecord is the largest plaintext of one TLS record (RFC 8446 5.1).
const maxRecord = 16 << 10

// bufSize is the size of a burst buffer: four records, so that a burst
// from TLS leaves in one write of up to four records and a burst to TLS
// is read with one read(2) for four records. Buffers are held only while
// bytes flow.
const bufSize = 4 * maxRecord

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
	// hello, when set, sees what is read from this side before it is
	// forwarded, until it has judged it (see helloCheck.inspect). Reads
	// it holds back wait at most hello.wait for the bytes that decide,
	// then go on as they are (see direction.quiet).
	hello *helloCheck
}

// relay copies both ways between client and backend until both
// directions have ended. An end of stream in one direction is passed on
// as a half-close, so the other direction keeps flowing (a client that
// sends a request and then FIN still gets the whole response). Any error
// in either direction, a silence limit or Close cuts the relay: both
// connections close so that each peer can tell the stream was cut (see
// abort).
//
// A relay owns no goroutine of its own: each direction runs on one while
// bytes flow and parks when the relay goes quiet (see parker), and the
// direction that ends last calls done with the cause.
type relay struct {
	client, backend side
	t               *timeouts
	dirs            [2]direction // client to backend, backend to client
	left            atomic.Int32 // directions not ended yet
	errs            [2]error     // each written by its direction before left drops
	aborted         atomic.Bool
	abortOnce       sync.Once
	done            func(error)

	guardMu  sync.Mutex
	guard    *time.Timer // see relay.check; nil until a limit applies
	guardAt  time.Time   // when the guard fires; zero: not set
	silent   error       // the limit the guard ended the relay on
	marks    [2]stallMark
	watching atomic.Bool // the guard watches writes (see watchWrites); set under guardMu
}

// newRelay prepares a relay. in and out count the bytes delivered to the
// backend and to the client; t bounds silence (nil: no bound); done gets
// the relay's result.
func newRelay(client, backend side, in, out *atomic.Int64, t *timeouts,
	done func(error)) *relay {
	if t == nil {
		t = &timeouts{}
	}
	r := &relay{client: client, backend: backend, t: t, done: done}
	r.dirs[0] = direction{rl: r, i: 0, dst: backend, src: client, n: in}
	r.dirs[1] = direction{rl: r, i: 1, dst: client, src: backend, n: out}
	for i := range r.dirs {
		r.dirs[i].r.init(r.dirs[i].src.conn)
	}
	return r
}

// run starts both directions and returns once the backend-to-client one
// has ended or parked: the calling goroutine serves it until then.
func (r *relay) run() {
	r.t.start()
	r.left.Store(2)
	r.check()
	go r.dirs[0].run()
	r.dirs[1].run()
}

// ended records how direction i ended. A clean end half-closes; an error
// aborts the relay. The last direction to end reports the cause.
func (r *relay) ended(i int, err error) {
	r.errs[i] = err
	if err != nil {
		r.abort()
	} else {
		r.t.halfClosed()
		r.checkSilence()
		r.nudge(&r.dirs[1-i])
	}
	if r.left.Add(-1) == 0 {
		r.shut(false)
		r.stopGuard()
		r.done(r.cause())
	}
}

// nudge makes the other direction look at its silence limit again: the
// half-close timeout now applies.
func (r *relay) nudge(d *direction) {
	d.src.conn.SetReadDeadline(time.Now())
	parking.unpark(d)
}

// abort cuts the relay: it closes both connections so that neither peer
// takes the stream for a whole one (see closeCut), and starts parked
// directions so that they see it and end.
//
// A connection cut by a failure on the other side or by a timeout must
// not look ended in order, or its peer would take a stream cut short, an
// answer whose body runs to the end of the connection say, for a whole
// one (RFC 8446 6.1).
func (r *relay) abort() { r.shut(true) }

// shut closes both connections once: cut (see closeCut), or, once both
// directions have ended in order, at once. Either way it sends no
// close_notify: a direction that ended in order has sent its own
// (closeWrite).
func (r *relay) shut(cut bool) {
	r.abortOnce.Do(func() {
		r.aborted.Store(true)
		closeSide := closeNow
		if cut {
			closeSide = closeCut
		}
		closeSide(r.client.conn)
		closeSide(r.backend.conn)
		for i := range r.dirs {
			parking.unpark(&r.dirs[i])
		}
	})
}

// closeNow closes c at once: on TLS, its socket, with no close_notify.
func closeNow(c net.Conn) {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	c.Close()
}

// closeCut closes c, one side of a cut relay, so that its peer sees the
// cut. A TLS peer sees its stream end without close_notify, which TLS
// peers treat as a possible truncation. A cleartext peer has no such
// word: a FIN would end its stream as if complete, so a TCP socket is
// reset instead (SO_LINGER 0, RFC 793 3.5 ABORT), dropping what it has
// not sent yet. A UNIX socket cannot be reset; it is closed.
func closeCut(c net.Conn) {
	if _, ok := c.(*tls.Conn); ok {
		closeNow(c)
		return
	}
	if s, ok := c.(*sock); ok {
		c = s.Conn
	}
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

// cause is the relay's result: the first failure, the other direction
// then having seen its connection closed under it.
func (r *relay) cause() error {
	r.guardMu.Lock()
	silent := r.silent
	r.guardMu.Unlock()
	if silent != nil {
		return silent
	}
	errIn, errOut := r.errs[0], r.errs[1]
	if errIn != nil && !errors.Is(errIn, net.ErrClosed) {
		return errIn
	}
	if errOut != nil && !errors.Is(errOut, net.ErrClosed) {
		return errOut
	}
	if errIn != nil {
		return errIn // the log line's reason is one line: no errors.Join
	}
	return errOut
}

// errParked ends a direction's goroutine while the direction lives on in
// the parker.
var errParked = errors.New("parked")

// direction is one way of a relay: src is read, dst written.
type direction struct {
	rl       *relay
	i        int
	dst, src side
	n        *atomic.Int64
	r        reader
	armed    bool      // src is registered with the parker (guarded by its lock)
	running  time.Time // when the current run began
	hold     time.Time // when src.hello gives up on the bytes it holds; zero: none held
	// writes counts the writes begun and busy marks one that has not
	// returned, for the write timeout (see stall.go).
	writes atomic.Uint64
	busy   atomic.Bool
}

// run copies until the source ends, fails or parks. It runs again, on a
// new goroutine, each time the parker starts it.
func (d *direction) run() {
	d.running = time.Now()
	err := d.copy()
	if err == errParked {
		return
	}
	d.r.release()
	d.rl.ended(d.i, err)
}

// copy moves bytes from src to dst until src ends (then it half-closes
// dst and returns nil), fails, or parks (errParked).
func (d *direction) copy() error {
	if err := d.quiet(); err != nil {
		return err
	}
	for {
		data, rerr := d.r.read()
		if len(data) > 0 {
			if err := d.write(data); err != nil {
				return err
			}
		}
		switch {
		case rerr == nil:
		case rerr == io.EOF:
			if d.src.hello != nil { // what it holds is all there is
				if err := d.write(nil); err != nil {
					return err
				}
			}
			d.startWrite() // close_notify is a write too
			err := closeWrite(d.dst)
			d.endWrite()
			return err
		case errors.Is(rerr, os.ErrDeadlineExceeded):
			if err := d.quiet(); err != nil {
				return err
			}
		default:
			return fmt.Errorf("read from %s: %w", d.src.name, rerr)
		}
	}
}

// write forwards data read from src, once src's hello check, if it has
// one, has judged it.
func (d *direction) write(data []byte) error {
	d.rl.t.touch()
	if h := d.src.hello; h != nil {
		held, wait, err := h.inspect(data)
		if err != nil {
			return err
		}
		if wait {
			if d.hold.IsZero() {
				// The next read returns at once, for quiet to bound the hold.
				d.hold = time.Now().Add(h.wait)
				d.src.conn.SetReadDeadline(time.Now())
			}
			return nil
		}
		d.src.hello, d.hold = nil, time.Time{}
		if err := d.forward(held); err != nil {
			return err
		}
	}
	return d.forward(data)
}

// expireHold forwards the bytes src's hello check has held back for as long
// as it may, once that time has come.
func (d *direction) expireHold(now time.Time) error {
	if d.hold.IsZero() || now.Before(d.hold) {
		return nil
	}
	held := d.src.hello.expire()
	d.src.hello, d.hold = nil, time.Time{}
	return d.forward(held)
}

// forward writes data to dst and counts it.
func (d *direction) forward(data []byte) error {
	if len(data) == 0 {
		return nil
	}
	d.startWrite()
	nw, err := d.dst.conn.Write(data)
	d.endWrite()
	d.n.Add(int64(nw))
	if err != nil {
		return fmt.Errorf("write to %s: %w", d.dst.name, err)
	}
	return nil
}

// quiet handles silence: at the start of a run and whenever the read
// deadline passes, it ends the relay on a silence limit, parks the
// direction (errParked), or sets the deadline of the next check.
func (d *direction) quiet() error {
	if err := d.expireHold(time.Now()); err != nil {
		return err
	}
	// Held bytes keep the direction running, to be released in time.
	canPark := d.r.sock != nil && parking.available() && d.hold.IsZero()
	v, err := d.rl.t.next(time.Now(), d.running, canPark)
	if err != nil {
		return err
	}
	if v.park {
		d.r.release()
		if parking.park(d, v.wake) {
			return errParked
		}
		if v, err = d.rl.t.next(time.Now(), d.running, false); err != nil {
			return err
		}
	}
	d.src.conn.SetReadDeadline(earliest(v.until, d.hold))
	return nil
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
