package proxy

import (
	"net"
	"net/netip"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// loopGuard spots attlsd's own outbound connections coming back to an
// intercept listener. A netfilter REDIRECT in the OUTPUT chain that does
// not exclude attlsd's traffic (-m owner ! --uid-owner) sends attlsd's
// TLS connection to the endpoint back to attlsd, which would dial again,
// without end. Each transparent dial binds its source port before
// connecting and records it with the destination; a redirected connection
// from a recorded port to the same original destination is the loop.
type loopGuard struct {
	mu    sync.Mutex
	ports map[uint16]netip.AddrPort // source port -> destination dialled
}

// control binds the dialling socket to an ephemeral port before connect
// and records it; it has the signature of net.Dialer.Control.
func (g *loopGuard) control(network, address string, rc syscall.RawConn) error {
	dst, err := netip.ParseAddrPort(address)
	if err != nil {
		return nil
	}
	var port uint16
	var berr error
	err = rc.Control(func(fd uintptr) { port, berr = bindEphemeral(int(fd), dst) })
	if err != nil || berr != nil {
		return nil // an unbound socket still works; only the guard is lost
	}
	g.mu.Lock()
	if g.ports == nil {
		g.ports = make(map[uint16]netip.AddrPort)
	}
	g.ports[port] = dst
	g.mu.Unlock()
	return nil
}

// release forgets c, a finished outbound connection; a nil guard has
// nothing to forget.
func (g *loopGuard) release(c net.Conn) {
	if g == nil {
		return
	}
	if ap, err := netip.ParseAddrPort(c.LocalAddr().String()); err == nil {
		g.forget(ap.Port())
	}
}

// forget drops the record of a finished outbound connection.
func (g *loopGuard) forget(port uint16) {
	g.mu.Lock()
	delete(g.ports, port)
	g.mu.Unlock()
}

// looped reports whether a connection from client to original destination
// dst is one of attlsd's own.
func (g *loopGuard) looped(client, dst netip.AddrPort) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	d, ok := g.ports[client.Port()]
	return ok && d.Addr().Unmap() == dst.Addr().Unmap() && d.Port() == dst.Port()
}

// bindEphemeral binds fd to the unspecified address of dst's family and
// port 0, and returns the port the kernel chose.
func bindEphemeral(fd int, dst netip.AddrPort) (uint16, error) {
	var sa unix.Sockaddr = &unix.SockaddrInet6{}
	if dst.Addr().Is4() {
		sa = &unix.SockaddrInet4{}
	}
	if err := unix.Bind(fd, sa); err != nil {
		return 0, err
	}
	got, err := unix.Getsockname(fd)
	if err != nil {
		return 0, err
	}
	switch a := got.(type) {
	case *unix.SockaddrInet4:
		return uint16(a.Port), nil
	case *unix.SockaddrInet6:
		return uint16(a.Port), nil
	}
	return 0, nil
}
