package proxy

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t testing.TB) (a, b *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		done <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s := <-done
	t.Cleanup(func() { c.Close(); s.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

// relayed sets up client <-> relay <-> backend over real sockets and
// returns the outer ends: what the client and the backend hold.
func relayed(t *testing.T) (client, backend *net.TCPConn, done chan error) {
	t.Helper()
	return relayedWith(t, nil)
}

// relayedWith is relayed with silence bounds.
func relayedWith(t *testing.T, to *timeouts) (client, backend *net.TCPConn, done chan error) {
	t.Helper()
	client, proxyClient := tcpPair(t)
	proxyBackend, backend := tcpPair(t)
	done = make(chan error, 1)
	var in, out atomic.Int64
	go func() {
		done <- relay(side{conn: proxyClient, name: "client"},
			side{conn: proxyBackend, name: "backend"}, &in, &out, to)
	}()
	return client, backend, done
}

func TestRelayHalfClose(t *testing.T) {
	tests := []struct {
		name string
		// first closes its write side after sending; second answers after
		// seeing EOF.
		swap bool
	}{
		{"client FIN first, backend answers after EOF", false},
		{"backend FIN first, client answers after EOF", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client, backend, done := relayed(t)
			first, second := client, backend
			if tt.swap {
				first, second = backend, client
			}
			request := []byte("request body")
			response := bytes.Repeat([]byte("r"), 1<<20)

			first.Write(request)
			first.CloseWrite()

			got, err := io.ReadAll(second) // ends only at the relayed FIN
			if err != nil || !bytes.Equal(got, request) {
				t.Fatalf("second read %q, %v; want %q, EOF", got, err, request)
			}
			second.Write(response)
			second.CloseWrite()

			got, err = io.ReadAll(first)
			if err != nil || !bytes.Equal(got, response) {
				t.Fatalf("first read %d bytes, %v; want %d, EOF", len(got), err, len(response))
			}
			if err := <-done; err != nil {
				t.Fatalf("relay: got %v, want nil", err)
			}
		})
	}
}

func TestRelayBothWaysIntact(t *testing.T) {
	client, backend, done := relayed(t)
	const size = 8 << 20
	up, down := randomBytes(t, size), randomBytes(t, size)

	var wg sync.WaitGroup
	var gotUp, gotDown []byte
	wg.Add(4)
	go func() { defer wg.Done(); client.Write(up); client.CloseWrite() }()
	go func() { defer wg.Done(); backend.Write(down); backend.CloseWrite() }()
	go func() { defer wg.Done(); gotUp, _ = io.ReadAll(backend) }()
	go func() { defer wg.Done(); gotDown, _ = io.ReadAll(client) }()
	wg.Wait()

	if sha256.Sum256(gotUp) != sha256.Sum256(up) {
		t.Errorf("client to backend: got %d bytes with another digest, want %d", len(gotUp), size)
	}
	if sha256.Sum256(gotDown) != sha256.Sum256(down) {
		t.Errorf("backend to client: got %d bytes with another digest, want %d", len(gotDown), size)
	}
	if err := <-done; err != nil {
		t.Errorf("relay: got %v, want nil", err)
	}
}

func TestRelayResetClosesBoth(t *testing.T) {
	client, backend, done := relayed(t)
	client.SetLinger(0) // Close sends RST
	client.Close()

	backend.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(backend); err != nil {
		t.Fatalf("backend read: got %v, want EOF after the client's reset", err)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("relay still running after the client reset")
	}
}

func randomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// chunkConn is an in-memory net.Conn that yields n full reads, then EOF,
// and discards writes, with no allocation of its own.
type chunkConn struct {
	net.Conn
	reads int
}

func (c *chunkConn) Read(p []byte) (int, error) {
	if c.reads == 0 {
		return 0, io.EOF
	}
	c.reads--
	return len(p), nil
}

func (c *chunkConn) Write(p []byte) (int, error) { return len(p), nil }
func (c *chunkConn) CloseWrite() error           { return nil }

func TestPipeAllocatesNothingPerRead(t *testing.T) {
	src, dst := &chunkConn{}, &chunkConn{}
	var n atomic.Int64
	const reads = 1000
	allocs := testing.AllocsPerRun(20, func() {
		src.reads = reads
		if err := pipe(side{conn: dst, name: "client"}, side{conn: src, name: "backend"}, &n, nil); err != nil {
			t.Fatal(err)
		}
	})
	// The race detector makes sync.Pool drop buffers at random, so a run
	// may pay for one buffer; never for a read.
	if allocs > 1 {
		t.Errorf("pipe of %d reads: got %.1f allocations, want 0 (1 under -race)", reads, allocs)
	}
}

// BenchmarkPipeTCP measures the copy loop over a loopback TCP pair, one
// 16 KiB chunk per operation.
func BenchmarkPipeTCP(b *testing.B) {
	srcW, srcR := tcpPair(b)
	dstW, dstR := tcpPair(b)
	chunk := make([]byte, bufSize)
	go func() {
		for i := 0; i < b.N; i++ {
			srcW.Write(chunk)
		}
		srcW.CloseWrite()
	}()
	go io.Copy(io.Discard, dstR)

	var n atomic.Int64
	b.SetBytes(bufSize)
	b.ReportAllocs()
	b.ResetTimer()
	if err := pipe(side{conn: dstW, name: "backend"}, side{conn: srcR, name: "client"}, &n, nil); err != nil {
		b.Fatal(err)
	}
}
