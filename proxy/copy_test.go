package proxy

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
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
		done <- runRelay(side{conn: proxyClient, name: "client"},
			side{conn: proxyBackend, name: "backend"}, &in, &out, to)
	}()
	return client, backend, done
}

// runRelay runs a relay to its end and returns its result.
func runRelay(client, backend side, in, out *atomic.Int64, to *timeouts) error {
	done := make(chan error, 1)
	newRelay(client, backend, in, out, to, func(err error) { done <- err }).run()
	return <-done
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

// TestRelayResetClosesBoth: a client's reset cuts the relay, and the
// cleartext backend sees the cut as a reset too, not as an end of stream
// that would look complete.
func TestRelayResetClosesBoth(t *testing.T) {
	client, backend, done := relayed(t)
	client.SetLinger(0) // Close sends RST
	client.Close()

	backend.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(backend); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("backend read: got %v, want a reset after the client's reset", err)
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

// throughCopy sets up one relay direction over loopback TCP pairs: a
// writer sends chunks of size bytes into its source (TLS when tlsSrc is
// set) and a reader drains its destination. run starts the writer and
// copies until the source ends.
func throughCopy(tb testing.TB, tlsSrc bool, chunks, size int) (run func() error) {
	return through(tb, tlsSrc, chunks, size, false)
}

// through is throughCopy, or with bare set, the same with a plain read
// and write loop over one buffer in place of the relay direction: what
// reading the source costs by itself.
func through(tb testing.TB, tlsSrc bool, chunks, size int, bare bool) (run func() error) {
	tb.Helper()
	srcW, srcR := tcpPair(tb)
	dstW, dstR := tcpPair(tb)
	var w io.Writer = srcW
	var src net.Conn = srcR
	if tlsSrc {
		w, src = tlsPair(tb, srcW, srcR)
	}
	chunk := make([]byte, size)
	go io.Copy(io.Discard, dstR)
	var in atomic.Int64
	d := &direction{dst: side{conn: dstW, name: "backend"}, src: side{conn: src, name: "client"},
		n: &in, rl: &relay{t: &timeouts{}}}
	d.r.init(src)
	return func() error {
		go func() {
			for range chunks {
				w.Write(chunk)
			}
			srcW.CloseWrite()
		}()
		if bare {
			_, err := io.CopyBuffer(struct{ io.Writer }{dstW}, struct{ io.Reader }{src},
				make([]byte, bufSize))
			return err
		}
		d.rl.t.start()
		defer d.r.release()
		return d.copy()
	}
}

// tlsPair runs a TLS handshake over a TCP pair and returns the client
// end and the server end, the server on a sock as attlsd uses it.
func tlsPair(tb testing.TB, c, s *net.TCPConn) (*tls.Conn, *tls.Conn) {
	tb.Helper()
	pki := loadPKI(tb)
	srv := tls.Server(newSock(s), &tls.Config{Certificates: []tls.Certificate{pki.server.Cert}})
	cli := tls.Client(c, &tls.Config{RootCAs: pki.pool, ServerName: "localhost"})
	errc := make(chan error, 1)
	go func() { errc <- srv.Handshake() }()
	if err := cli.Handshake(); err != nil {
		tb.Fatal(err)
	}
	if err := <-errc; err != nil {
		tb.Fatal(err)
	}
	return cli, srv
}

// TestCopyAllocatesNothingPerRead: the cost of a relay direction does not
// grow with the number of reads. From a TLS source, crypto/tls itself
// allocates a 24-byte reader per socket read it makes (conn.go
// readFromUntil), and the relay makes one more such read at the end of
// each burst (the one that finds the socket empty); a cost of the relay's
// own per read would add at least one allocation per chunk.
func TestCopyAllocatesNothingPerRead(t *testing.T) {
	for _, tlsSrc := range []bool{false, true} {
		name := map[bool]string{false: "tcp", true: "tls"}[tlsSrc]
		t.Run(name, func(t *testing.T) {
			ours := perChunk(t, tlsSrc, false)
			alone := perChunk(t, tlsSrc, true)
			// Pools may drop a buffer at a GC (and at random under the
			// race detector), and bursts end where the scheduler decides.
			if ours-alone > 0.25 {
				t.Errorf("got %.3f allocations per 16 KiB chunk, want no more than reading "+
					"the source alone does (%.3f)", ours, alone)
			}
		})
	}
}

// perChunk returns the allocations per 16 KiB chunk copied, from the
// difference between copying 200 and 2000 chunks.
func perChunk(t *testing.T, tlsSrc, bare bool) float64 {
	few, many := mallocs(t, tlsSrc, bare, 200), mallocs(t, tlsSrc, bare, 2000)
	return float64(many-few) / 1800
}

// mallocs counts the heap allocations of copying chunks 16 KiB chunks.
func mallocs(t *testing.T, tlsSrc, bare bool, chunks int) int64 {
	run := through(t, tlsSrc, chunks, maxRecord, bare)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if err := run(); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	return int64(after.Mallocs) - int64(before.Mallocs)
}

// BenchmarkCopy measures one relay direction over loopback TCP, from a
// TCP and from a TLS source, one 16 KiB chunk per operation.
func BenchmarkCopy(b *testing.B) {
	for _, tlsSrc := range []bool{false, true} {
		name := map[bool]string{false: "tcp", true: "tls"}[tlsSrc]
		b.Run(name, func(b *testing.B) {
			run := throughCopy(b, tlsSrc, b.N, maxRecord)
			b.SetBytes(maxRecord)
			b.ReportAllocs()
			b.ResetTimer()
			if err := run(); err != nil {
				b.Fatal(err)
			}
		})
	}
}
