// Package testnet holds what the tests of several attlsd packages share:
// servers on loopback sockets that end with the test.
package testnet

import (
	"bufio"
	"io"
	"net"
	"testing"

	proxyproto "github.com/pires/go-proxyproto"
)

// Listen listens on a free loopback TCP port until the test ends.
func Listen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// Serve accepts on ln until it is closed and runs handle on each
// connection on a goroutine of its own, closing the connection after.
func Serve(ln net.Listener, handle func(net.Conn)) {
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				handle(c)
			}()
		}
	}()
}

// FreePort returns a loopback port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// EchoBackend copies every connection back to itself and returns its
// address.
func EchoBackend(t testing.TB) string {
	t.Helper()
	ln := Listen(t)
	Serve(ln, func(c net.Conn) { io.Copy(c, c) })
	return ln.Addr().String()
}

// NamedBackend answers every connection with name and a newline after
// the PROXY header, then echoes, and returns its address.
func NamedBackend(t testing.TB, name string) string {
	t.Helper()
	ln := Listen(t)
	Serve(ln, func(c net.Conn) {
		r := bufio.NewReader(c)
		if _, err := proxyproto.Read(r); err != nil {
			return
		}
		io.WriteString(c, name+"\n")
		io.Copy(c, r)
	})
	return ln.Addr().String()
}
