package proxy

import (
	"io"
	"net"
	"os"
	"sync/atomic"
	"syscall"
)

// sock is a socket that a pipe can also read without waiting. Under a
// tls.Conn it lets the pipe drain what TLS has buffered and stop, rather
// than block holding a copy buffer: crypto/tls reads ahead into its own
// buffer, so a socket with nothing to read does not mean a tls.Conn with
// nothing to return.
//
// A sock is read by one goroutine at a time (the tls.Conn's reader, or
// the pipe), so its fields need no lock, but for the write count.
type sock struct {
	net.Conn
	rc syscall.RawConn // nil: every read waits, as the plain Conn does

	// noWait makes Read return errWouldBlock when the socket is empty.
	noWait bool
	// try is tryRead bound once, so that a read allocates nothing.
	try  func(fd uintptr) bool
	p    []byte
	n    int
	rerr error

	// written counts the bytes Write gave the socket, for the relay's
	// write timeout (see stall.go); read by its guard.
	written atomic.Int64
}

// errWouldBlock says that nothing can be read now. It is a temporary
// net.Error so that crypto/tls keeps the connection usable and returns
// the error from Read (crypto/tls conn.go readRecordOrCCS).
var errWouldBlock error = wouldBlock{}

type wouldBlock struct{}

func (wouldBlock) Error() string   { return "read would block" }
func (wouldBlock) Timeout() bool   { return true }
func (wouldBlock) Temporary() bool { return true }

// newSock wraps c. A connection that offers no raw descriptor (a net.Pipe
// in tests) gets a sock that always waits.
func newSock(c net.Conn) *sock {
	s := &sock{Conn: c}
	if sc, ok := c.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			s.rc = rc
			s.try = s.tryRead
		}
	}
	return s
}

// Read reads as the socket does, or, with noWait set, only what is
// there now.
func (s *sock) Read(p []byte) (int, error) {
	if !s.noWait || s.rc == nil || len(p) == 0 {
		return s.Conn.Read(p)
	}
	s.p = p
	err := s.rc.Read(s.try)
	n, rerr := s.n, s.rerr
	s.p, s.rerr = nil, nil
	if err != nil {
		return 0, err
	}
	return n, rerr
}

// tryRead is one read(2) on the non-blocking descriptor. It always
// reports done, so the runtime never parks the goroutine for it.
func (s *sock) tryRead(fd uintptr) bool {
	for {
		n, err := syscall.Read(int(fd), s.p)
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			s.n, s.rerr = 0, errWouldBlock
		case err != nil:
			s.n, s.rerr = 0, &net.OpError{Op: "read", Net: s.LocalAddr().Network(),
				Source: s.LocalAddr(), Addr: s.RemoteAddr(), Err: os.NewSyscallError("read", err)}
		case n == 0:
			s.n, s.rerr = 0, io.EOF
		default:
			s.n, s.rerr = n, nil
		}
		return true
	}
}

// Write writes as the socket does and counts what it wrote. Under TLS
// each call is one record, so the count moves a record at a time while
// the tls.Conn's own Write waits.
func (s *sock) Write(p []byte) (int, error) {
	n, err := s.Conn.Write(p)
	s.written.Add(int64(n))
	return n, err
}

// CloseWrite half-closes the socket; a connection that cannot half-close
// has nothing to do.
func (s *sock) CloseWrite() error {
	if hc, ok := s.Conn.(interface{ CloseWrite() error }); ok {
		return hc.CloseWrite()
	}
	return nil
}
