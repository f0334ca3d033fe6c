package proxy

import (
	"crypto/tls"
	"errors"
	"net"
	"sync"
)

// smallSize is how much a direction reads while its source is quiet. A
// request line, a ping or a short message fits, so it moves without a
// copy buffer; anything longer starts a burst.
const smallSize = 256

// smallPool lends the arrays of waiting reads.
var smallPool = sync.Pool{New: func() any { return new([smallSize]byte) }}

// reader reads one direction of a relay so that a quiet connection holds
// no copy buffer. It waits for the next bytes with only a small array;
// when they fill it, it borrows a pooled buffer and takes what is already
// there without waiting, and gives the buffer back as soon as nothing is.
// A parked direction holds neither.
type reader struct {
	conn  net.Conn // what is read: a *tls.Conn or the socket
	sock  *sock    // the socket under conn; nil: every read waits
	tls   bool     // conn is TLS: a read returns one record at most
	small *[smallSize]byte
	bp    *[]byte // the borrowed buffer during a burst
}

// init prepares r to read c. A socket not yet wrapped in a sock gets one.
func (r *reader) init(c net.Conn) {
	r.conn = c
	switch c := c.(type) {
	case *tls.Conn:
		r.sock, _ = c.NetConn().(*sock)
		r.tls = true
	case *sock:
		r.sock = c
	default:
		r.sock = newSock(c)
		r.conn = r.sock
	}
	if r.sock != nil && r.sock.rc == nil {
		r.sock = nil
	}
}

// read returns the next bytes of the source, valid until the next call.
func (r *reader) read() ([]byte, error) {
	if r.bp != nil {
		n, err := r.fill(*r.bp, 0)
		if n > 0 || !errors.Is(err, errWouldBlock) {
			return (*r.bp)[:n], nilIfWouldBlock(err)
		}
		bufPool.Put(r.bp)
		r.bp = nil
	}
	if r.small == nil {
		r.small = smallPool.Get().(*[smallSize]byte)
	}
	k, err := r.conn.Read(r.small[:])
	if k < len(r.small) || err != nil || r.sock == nil {
		return r.small[:k], err
	}
	r.bp = bufPool.Get().(*[]byte)
	buf := *r.bp
	copy(buf, r.small[:k])
	n, err := r.fill(buf, k)
	return buf[:n], nilIfWouldBlock(err)
}

// fill adds to buf[:n] what the source can give without waiting and
// returns the new length. A read from TLS returns one record at most, so
// fill reads again while another whole record fits: one write then
// carries several records, and one read(2) of the socket as much as the
// buffer holds.
func (r *reader) fill(buf []byte, n int) (int, error) {
	for {
		m, err := r.readNow(buf[n:])
		n += m
		if err != nil || m == 0 || !r.tls || len(buf)-n < maxRecord {
			return n, err
		}
	}
}

// readNow reads what the source can give without waiting: bytes already
// buffered by TLS, then what the socket holds.
func (r *reader) readNow(p []byte) (int, error) {
	r.sock.noWait = true
	n, err := r.conn.Read(p)
	r.sock.noWait = false
	return n, err
}

// release returns the small array and the borrowed buffer.
func (r *reader) release() {
	if r.bp != nil {
		bufPool.Put(r.bp)
		r.bp = nil
	}
	if r.small != nil {
		smallPool.Put(r.small)
		r.small = nil
	}
}

func nilIfWouldBlock(err error) error {
	if errors.Is(err, errWouldBlock) {
		return nil
	}
	return err
}
