package proxy

import (
	"crypto/tls"
	"net"

	"golang.org/x/sys/unix"
)

// acked returns how many bytes the peer of c has acknowledged, when c is
// a TCP socket (under TLS or not), else 0. The kernel counts them
// (tcpi_bytes_acked, Linux 4.1) as the peer's window opens, so a peer
// that reads slowly shows progress even while one write of attlsd's, or
// the kernel's wait for a good part of the send buffer to free, lasts
// longer than the write timeout.
func acked(c net.Conn) int64 {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	if s, ok := c.(*sock); ok {
		c = s.Conn
	}
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return 0
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return 0
	}
	var n int64
	rc.Control(func(fd uintptr) {
		info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
		if err == nil {
			n = int64(info.Bytes_acked)
		}
	})
	return n
}
