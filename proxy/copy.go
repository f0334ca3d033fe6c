package proxy

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
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

// relay copies both ways between client and backend until both directions
// have ended. An end of stream in one direction is passed on as a
// half-close, so the other direction keeps flowing (a client that sends a
// request and then FIN still gets the whole response). Any error in
// either direction closes both connections. in and out count the bytes
// delivered to the backend and to the client.
func relay(client, backend side, in, out *atomic.Int64) error {
	var once sync.Once
	abort := func() {
		once.Do(func() {
			client.conn.Close()
			backend.conn.Close()
		})
	}

	errc := make(chan error, 1)
	go func() {
		err := pipe(backend, client, in)
		if err != nil {
			abort()
		}
		errc <- err
	}()
	errOut := pipe(client, backend, out)
	if errOut != nil {
		abort()
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
// half-closes dst. It returns nil after a clean end of stream.
func pipe(dst, src side, n *atomic.Int64) error {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp

	for {
		nr, rerr := src.conn.Read(buf)
		if nr > 0 && src.inspect != nil {
			if err := src.inspect(buf[:nr]); err != nil {
				return err
			}
			src.inspect = nil
		}
		if nr > 0 {
			nw, werr := dst.conn.Write(buf[:nr])
			n.Add(int64(nw))
			if werr != nil {
				return fmt.Errorf("write to %s: %w", dst.name, werr)
			}
		}
		if rerr == io.EOF {
			return closeWrite(dst)
		}
		if rerr != nil {
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
