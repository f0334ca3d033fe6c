package e2e

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
	"github.com/pires/go-proxyproto/tlvparse"
)

// backend is a Go TCP server on 127.0.0.1 standing in for the cleartext
// app behind attlsd. It reads the PROXY header itself, keeping the exact
// bytes, then hands the connection to a handler.
type backend struct {
	addr     string
	accepted atomic.Int64 // connections taken so far
	ln       net.Listener
	wg       sync.WaitGroup
}

// backendConn is one connection from attlsd to the backend.
type backendConn struct {
	*net.TCPConn
	// Raw holds the PROXY header exactly as received; Header is its
	// parsed form. Both are nil for a raw backend.
	Raw    []byte
	Header *proxyproto.Header
}

// startBackend runs a backend that reads a PROXY header (v1 or v2) from
// each connection and then calls handle. A connection without a valid
// header fails the test.
func startBackend(t *testing.T, handle func(*backendConn)) *backend {
	return serveBackend(t, true, handle)
}

// startRawBackend runs a backend that hands connections to handle as
// they come, without reading a header.
func startRawBackend(t *testing.T, handle func(*backendConn)) *backend {
	return serveBackend(t, false, handle)
}

func serveBackend(t *testing.T, readHeader bool, handle func(*backendConn)) *backend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return serveBackendOn(t, ln, readHeader, handle)
}

// serveBackendOn is serveBackend on a listener of the caller's, one bound
// in another network namespace, say. The backend closes it when the test
// ends.
func serveBackendOn(t *testing.T, ln net.Listener, readHeader bool,
	handle func(*backendConn)) *backend {
	t.Helper()
	b := &backend{addr: ln.Addr().String(), ln: ln}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.accepted.Add(1)
			b.wg.Add(1)
			go func() {
				defer b.wg.Done()
				defer c.Close()
				b.serve(t, c.(*net.TCPConn), readHeader, handle)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		b.wg.Wait()
	})
	return b
}

func (b *backend) serve(t *testing.T, c *net.TCPConn, readHeader bool, handle func(*backendConn)) {
	c.SetDeadline(time.Now().Add(ioTimeout))
	bc := &backendConn{TCPConn: c}
	if readHeader {
		raw, h, err := readProxyHeader(c)
		if err != nil {
			t.Errorf("backend: read PROXY header: %v", err)
			return
		}
		bc.Raw, bc.Header = raw, h
	}
	handle(bc)
}

// readProxyHeader reads exactly one PROXY header, v1 or v2, and nothing
// after it, returning its bytes and its parsed form.
func readProxyHeader(r io.Reader) ([]byte, *proxyproto.Header, error) {
	raw := make([]byte, 6)
	if _, err := io.ReadFull(r, raw); err != nil {
		return nil, nil, err
	}
	if string(raw) == "PROXY " {
		line, err := readLine(r, 107)
		if err != nil {
			return nil, nil, err
		}
		raw = append(raw, line...)
	} else {
		rest := make([]byte, 10)
		if _, err := io.ReadFull(r, rest); err != nil {
			return nil, nil, err
		}
		raw = append(raw, rest...)
		if !bytes.HasPrefix(raw, proxyproto.SIGV2) {
			return nil, nil, fmt.Errorf("no PROXY signature in %q", raw)
		}
		body := make([]byte, binary.BigEndian.Uint16(raw[14:16]))
		if _, err := io.ReadFull(r, body); err != nil {
			return nil, nil, err
		}
		raw = append(raw, body...)
	}
	h, err := proxyproto.Read(bufio.NewReader(bytes.NewReader(raw)))
	if err != nil {
		return nil, nil, fmt.Errorf("parse %q: %w", raw, err)
	}
	return raw, h, nil
}

// readLine reads up to and including "\r\n", one byte at a time so that
// nothing after the line is consumed.
func readLine(r io.Reader, max int) ([]byte, error) {
	var line []byte
	b := make([]byte, 1)
	for len(line) < max {
		if _, err := io.ReadFull(r, b); err != nil {
			return nil, err
		}
		line = append(line, b[0])
		if bytes.HasSuffix(line, []byte("\r\n")) {
			return line, nil
		}
	}
	return nil, fmt.Errorf("PROXY v1 line longer than %d bytes", max)
}

// tlv returns the value of the first top-level TLV of type typ.
func (bc *backendConn) tlv(typ proxyproto.PP2Type) (string, bool) {
	tlvs, err := bc.Header.TLVs()
	if err != nil {
		return "", false
	}
	for _, t := range tlvs {
		if t.Type == typ {
			return string(t.Value), true
		}
	}
	return "", false
}

// ssl returns the parsed PP2_TYPE_SSL TLV.
func (bc *backendConn) ssl() (tlvparse.PP2SSL, bool) {
	tlvs, err := bc.Header.TLVs()
	if err != nil {
		return tlvparse.PP2SSL{}, false
	}
	return tlvparse.FindSSL(tlvs)
}

// source is the client address the header carries, as host:port.
func (bc *backendConn) source() string {
	if bc.Header == nil || bc.Header.SourceAddr == nil {
		return ""
	}
	return bc.Header.SourceAddr.String()
}

// record passes each connection on to the returned channel, header read,
// and then runs next on it.
func record(next func(*backendConn)) (func(*backendConn), <-chan *backendConn) {
	ch := make(chan *backendConn, 16)
	return func(bc *backendConn) {
		offer(ch, bc)
		next(bc)
	}, ch
}

// offer sends v on ch from a backend handler, giving up after ioTimeout
// so that a test which stopped listening cannot hang the backend's
// cleanup.
func offer[T any](ch chan<- T, v T) {
	select {
	case ch <- v:
	case <-time.After(ioTimeout):
	}
}

// receive takes one value from ch or fails the test after ioTimeout.
func receive[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(ioTimeout):
		t.Fatalf("no %s within %s", what, ioTimeout)
		panic("unreachable")
	}
}

// answerHTTP reads one HTTP request and answers it with body, then closes.
func answerHTTP(body string) func(*backendConn) {
	return func(bc *backendConn) {
		req, err := http.ReadRequest(bufio.NewReader(bc))
		if err != nil {
			return // a client that gave up; the test sees it on its side
		}
		req.Body.Close()
		fmt.Fprintf(bc, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"+
			"Content-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body)
		bc.CloseWrite()
		io.Copy(io.Discard, bc)
	}
}

// echo copies everything back and half-closes when the client does.
func echo(bc *backendConn) {
	io.Copy(bc, bc)
	bc.CloseWrite()
}

// proc is an external program run by a test.
type proc struct {
	name   string
	cmd    *exec.Cmd
	out    *logSink // stdout and stderr together
	exited chan struct{}
}

// startProc runs a program with stdout and stderr captured, and stops it
// with SIGTERM when the test ends.
func startProc(t *testing.T, name string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = binEnv()
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	p := &proc{name: name, cmd: cmd, out: newLogSink(pr), exited: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		cmd.Wait()
		pw.Close()
		close(p.exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(stopTimeout):
			cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", name, p.out.text())
		}
	})
	return p
}

// waitListening waits until addr accepts TCP connections, or p exits.
func (p *proc) waitListening(network, addr string) error {
	deadline := time.Now().Add(startTimeout)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout(network, addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-p.exited:
			return fmt.Errorf("%s exited: %s", p.name, strings.TrimSpace(p.out.text()))
		case <-time.After(20 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s not listening on %s within %s", p.name, addr, startTimeout)
}

// startListening runs a server that listens on 127.0.0.1 at the port it
// is given, retrying with another port when the bind raced. args builds
// the command line for a port. It returns the process and its address.
func startListening(t *testing.T, name string, args func(port int) []string) (*proc, string) {
	t.Helper()
	var lastErr error
	for range bindRetries {
		port := freePorts(t, "127.0.0.1", 1)[0]
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		p := startProc(t, name, args(port)...)
		err := p.waitListening("tcp", addr)
		if err == nil {
			return p, addr
		}
		lastErr = err
		if !strings.Contains(strings.ToLower(err.Error()), "address already in use") {
			break
		}
	}
	t.Fatalf("start %s: %v", name, lastErr)
	return nil, ""
}

// startDemoBackend runs examples/backend on a free 127.0.0.1 port, or on
// a UNIX socket when unixPath is set, and returns the address to put in
// a policy.
func startDemoBackend(t *testing.T, unixPath string) string {
	t.Helper()
	if unixPath != "" {
		p := startProc(t, backendBin, "--listen", "unix:"+unixPath)
		if err := p.waitListening("unix", unixPath); err != nil {
			t.Fatal(err)
		}
		return "unix:" + unixPath
	}
	_, addr := startListening(t, backendBin, func(port int) []string {
		return []string{"--listen", fmt.Sprintf("127.0.0.1:%d", port)}
	})
	return addr
}

// errIsClosed reports whether err is one of the ways a peer ends a connection.
func errIsClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.EPIPE)
}

// mustParseHeader parses a raw PROXY header or fails the test.
func mustParseHeader(t *testing.T, raw []byte) *proxyproto.Header {
	t.Helper()
	h, err := proxyproto.Read(bufio.NewReader(bytes.NewReader(raw)))
	if err != nil {
		t.Fatalf("parse PROXY header %q: %v", raw, err)
	}
	return h
}
