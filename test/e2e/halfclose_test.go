package e2e

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"testing"
)

// patternStream is a deterministic pseudo-random byte stream: AES-CTR
// keyed by a seed, fast enough for tens of MiB under the race detector.
func patternStream(seed byte) cipher.Stream {
	key := make([]byte, 16)
	key[0] = seed
	blk, err := aes.NewCipher(key)
	if err != nil {
		panic(err)
	}
	return cipher.NewCTR(blk, make([]byte, aes.BlockSize))
}

// pattern returns n bytes of the stream for seed.
func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	patternStream(seed).XORKeyStream(b, b)
	return b
}

// writePattern writes n bytes of the stream for seed to w and returns
// their SHA-256.
func writePattern(w io.Writer, n int64, seed byte) ([]byte, error) {
	s, h := patternStream(seed), sha256.New()
	buf := make([]byte, 64<<10)
	for n > 0 {
		chunk := buf[:min(int64(len(buf)), n)]
		clear(chunk)
		s.XORKeyStream(chunk, chunk)
		h.Write(chunk)
		if _, err := w.Write(chunk); err != nil {
			return nil, err
		}
		n -= int64(len(chunk))
	}
	return h.Sum(nil), nil
}

// hashAll reads r to its end and returns the byte count and SHA-256.
func hashAll(r io.Reader) (int64, []byte, error) {
	h := sha256.New()
	n, err := io.Copy(h, r)
	return n, h.Sum(nil), err
}

// digest is a byte count and hash, or the error that cut a stream short.
type digest struct {
	n   int64
	sum []byte
	err error
}

func newDigest(n int64, sum []byte, err error) digest { return digest{n, sum, err} }

func (d digest) String() string {
	if d.err != nil {
		return d.err.Error()
	}
	return fmt.Sprintf("%d bytes, sha256 %x", d.n, d.sum[:8])
}

func (d digest) equal(o digest) bool {
	return d.err == nil && o.err == nil && d.n == o.n && bytes.Equal(d.sum, o.sum)
}

// halfClose ends the client's sending direction in one of two ways.
type halfClose struct {
	name string
	end  func(*tls.Conn) error
}

var halfCloses = []halfClose{
	// close_notify, the TLS way (RFC 8446 6.1).
	{"close_notify", func(c *tls.Conn) error { return c.CloseWrite() }},
	// A bare TCP FIN at a record boundary, as many clients do.
	{"FIN", func(c *tls.Conn) error { return c.NetConn().(*net.TCPConn).CloseWrite() }},
}

// TestHalfClose checks that an end of stream in one direction reaches the
// other side as EOF while the opposite direction keeps flowing: the
// client half-closes first (by close_notify or by a bare FIN) and still
// gets a response sent after the backend saw EOF; or the backend
// half-closes first and still gets what the client sends afterwards.
func TestHalfClose(t *testing.T) {
	for _, hc := range halfCloses {
		t.Run("client-first/"+hc.name, func(t *testing.T) {
			testClientFirst(t, hc.end)
		})
	}
	for _, hc := range halfCloses {
		t.Run("backend-first/"+hc.name, func(t *testing.T) {
			testBackendFirst(t, hc.end)
		})
	}
}

// testClientFirst: the client sends, half-closes, then reads a response
// the backend writes only after it saw EOF.
func testClientFirst(t *testing.T, end func(*tls.Conn) error) {
	request, response := pattern(3000, 1), pattern(200_000, 2)
	got := make(chan digest, 1)
	b := startBackend(t, func(bc *backendConn) {
		offer(got, newDigest(hashAll(bc)))
		bc.Write(response)
		bc.CloseWrite()
	})
	d := simpleDaemon(t, b.addr, nil, nil)

	c := dialTLS(t, d.addr("127.0.0.1", 0), clientTLS(t))
	if _, err := c.Write(request); err != nil {
		t.Fatal(err)
	}
	if err := end(c); err != nil {
		t.Fatalf("half-close: %v", err)
	}
	want := digestOf(request)
	if g := receive(t, got, "backend EOF"); !g.equal(want) {
		t.Errorf("backend read: got %v, want %v then EOF", g, want)
	}
	if g, want := newDigest(hashAll(c)), digestOf(response); !g.equal(want) {
		t.Errorf("client read after its half-close: got %v, want %v", g, want)
	}
	checkClean(t, d, c.LocalAddr().String(), len(request), len(response))
}

// testBackendFirst: the backend sends and half-closes; the client reads
// to EOF, then sends, and the backend still receives it.
func testBackendFirst(t *testing.T, end func(*tls.Conn) error) {
	greeting, late := pattern(100_000, 3), pattern(5000, 4)
	got := make(chan digest, 1)
	b := startBackend(t, func(bc *backendConn) {
		bc.Write(greeting)
		bc.CloseWrite()
		offer(got, newDigest(hashAll(bc)))
	})
	d := simpleDaemon(t, b.addr, nil, nil)

	c := dialTLS(t, d.addr("127.0.0.1", 0), clientTLS(t))
	if g, want := newDigest(hashAll(c)), digestOf(greeting); !g.equal(want) {
		t.Fatalf("client read: got %v, want %v then EOF", g, want)
	}
	if _, err := c.Write(late); err != nil {
		t.Fatalf("client write after EOF from the backend: %v", err)
	}
	if err := end(c); err != nil {
		t.Fatalf("half-close: %v", err)
	}
	if g, want := receive(t, got, "backend EOF"), digestOf(late); !g.equal(want) {
		t.Errorf("backend read after its half-close: got %v, want %v", g, want)
	}
	checkClean(t, d, c.LocalAddr().String(), len(late), len(greeting))
}

func digestOf(b []byte) digest {
	s := sha256.Sum256(b)
	return digest{n: int64(len(b)), sum: s[:]}
}

// checkClean checks that the connection's close line is an ordinary end
// with the byte counts each way.
func checkClean(t *testing.T, d *daemon, client string, in, out int) {
	t.Helper()
	line := d.closeLine(t, client)
	if line.str("level") != "info" || line.str("reason") != "closed" {
		t.Errorf("close line: got level %q, reason %q; want info, closed",
			line.str("level"), line.str("reason"))
	}
	if line.num("bytes_in") != float64(in) || line.num("bytes_out") != float64(out) {
		t.Errorf("close line: got bytes_in %v, bytes_out %v; want %d, %d",
			line.num("bytes_in"), line.num("bytes_out"), in, out)
	}
}

// TestLargeTransfer sends 64 MiB each way at the same time through one
// connection and compares SHA-256 digests at both ends.
func TestLargeTransfer(t *testing.T) {
	const size = 64 << 20
	type result struct{ sent, got digest }
	backendDone := make(chan result, 1)
	b := startBackend(t, func(bc *backendConn) {
		sent := make(chan digest, 1)
		go func() {
			sum, err := writePattern(bc, size, 21)
			bc.CloseWrite()
			sent <- digest{n: size, sum: sum, err: err}
		}()
		got := newDigest(hashAll(bc))
		offer(backendDone, result{<-sent, got})
	})
	d := simpleDaemon(t, b.addr, nil, nil)

	c := dialTLS(t, d.addr("127.0.0.1", 0), clientTLS(t))
	sent := make(chan digest, 1)
	go func() {
		sum, err := writePattern(c, size, 12)
		if err == nil {
			err = c.CloseWrite()
		}
		sent <- digest{n: size, sum: sum, err: err}
	}()
	clientGot := newDigest(hashAll(c))
	clientSent := receive(t, sent, "client write")
	be := receive(t, backendDone, "backend result")

	if !be.got.equal(clientSent) {
		t.Errorf("client to backend: backend got %v, client sent %v", be.got, clientSent)
	}
	if !clientGot.equal(be.sent) {
		t.Errorf("backend to client: client got %v, backend sent %v", clientGot, be.sent)
	}
	checkClean(t, d, c.LocalAddr().String(), size, size)
}
