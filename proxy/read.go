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
	small *[smallSize]byte
	bp    *[]byte // the borrowed buffer during a burst
}

// init prepares r to read c. A socket not yet wrapped in a sock gets one.
func (r *reader) init(c net.Conn) {
	r.conn = c
	switch c := c.(type) {
	case *tls.Conn:
		r.sock, _ = c.NetConn().(*sock)
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
		n, err := r.readNow(*r.bp)
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
	n, err := r.readNow(buf[k:])
	return buf[:k+n], nilIfWouldBlock(err)
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
