package proxy

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/attlsd/attlsd/policy"
)

// unansweringBackend returns a 127.0.0.1 address whose listener answers
// no new connection: its accept queue, of length zero, already holds one
// connection that is never accepted, so the kernel drops every further
// SYN and a dial waits until its timeout.
func unansweringBackend(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "unanswering backend")
	t.Cleanup(func() { f.Close() })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := (&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: sa.(*syscall.SockaddrInet4).Port}).String()
	for range 5 {
		c, err := net.DialTimeout("tcp", addr, 300*time.Millisecond)
		if err != nil {
			return addr // the queue is full
		}
		t.Cleanup(func() { c.Close() })
	}
	t.Fatalf("%s still answers after 5 connections; want its accept queue full", addr)
	return ""
}

// TestServerUnansweringBackend: a backend that never answers the connect
// is given up at the rule's connect_timeout, which the log names with the
// backend, and the client, whose request waits unread in attlsd's socket
// by then, sees its connection end in order rather than reset.
func TestServerUnansweringBackend(t *testing.T) {
	addr := unansweringBackend(t)
	rule := tlsRule(t, addr, policy.ClientAuthNone)
	rule.ConnectTimeout = 200 * time.Millisecond
	s, logs := startServer(t, rule)

	c, err := tls.Dial("tcp", s.Addrs()[0], clientConfig(t, false))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	// 64 KiB is more than crypto/tls reads ahead with the handshake's last
	// record, so most of it waits in the kernel when the dial gives up.
	go c.Write(make([]byte, 64<<10))
	got, err := io.ReadAll(c)
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		t.Fatalf("client connection still open after 5s")
	case err != nil || len(got) != 0:
		t.Errorf("client read: got %d bytes, %v; want none and a clean close", len(got), err)
	}
	c.Close()
	line := logs.closeLine(t)
	want := "dial " + addr + ": no answer within 200ms"
	if line["level"] != "error" || line["reason"] != want || line["backend"] != addr {
		t.Errorf("log: got level %v, reason %q, backend %v; want error, %q, %s",
			line["level"], line["reason"], line["backend"], want, addr)
	}
}
