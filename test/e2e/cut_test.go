package e2e

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestCutIsVisible cuts relays once bytes have flowed: the TLS client
// resets mid-upload, the rule's idle_timeout fires, the drain timeout
// ends the connection, or, outbound, the TLS endpoint resets
// mid-download. The cleartext peer (the backend, or the app) must see
// the cut as a reset after the bytes it was sent, not as an end of stream
// that looks complete; and the close line says why. (A backend that
// resets mid-download, seen by the TLS client as an end without
// close_notify, is in TestBackendFailsMidStream; a clean end is in
// TestCleanEndKeepsData.)
func TestCutIsVisible(t *testing.T) {
	upload := pattern(20_000, 7)
	tests := []struct {
		name      string
		ruleAttrs []string
		// client drives the client once connected, and returns what it
		// saw at the end ("" when it does not look).
		client      func(t *testing.T, d *daemon, c *tls.Conn, received <-chan struct{}) string
		wantClient  string
		wantBackend string
		reason      string
	}{
		{"client-resets-mid-upload", nil,
			func(t *testing.T, d *daemon, c *tls.Conn, received <-chan struct{}) string {
				c.Write(upload)
				receive(t, received, "the backend's first bytes")
				c.NetConn().(*net.TCPConn).SetLinger(0)
				c.NetConn().Close()
				return ""
			}, "", "reset", "read from client: "},
		{"idle-timeout", []string{`idle_timeout = "1s"`},
			func(t *testing.T, d *daemon, c *tls.Conn, received <-chan struct{}) string {
				c.Write(upload)
				return ending(c)
			}, "eof", "reset", "idle timeout: no byte for 1s"},
		{"drain-timeout", nil,
			func(t *testing.T, d *daemon, c *tls.Conn, received <-chan struct{}) string {
				c.Write(upload)
				receive(t, received, "the backend's first bytes")
				d.stop(t) // --drain-timeout 1s
				return ending(c)
			}, "eof", "reset", "drain timeout: closed by attlsd"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			received, saw := make(chan struct{}), make(chan string, 1)
			b := startBackend(t, func(bc *backendConn) {
				io.ReadFull(bc, make([]byte, 1000))
				close(received)
				saw <- ending(bc)
				bc.Write([]byte("answer"))
				bc.CloseWrite()
			})
			d := simpleDaemon(t, b.addr, nil, tt.ruleAttrs)
			c := dialTLS(t, d.addr("127.0.0.1", 0), clientTLS(t))
			if got := tt.client(t, d, c, received); got != tt.wantClient {
				t.Errorf("client saw its connection end by %s, want %s", got, tt.wantClient)
			}
			if got := receive(t, saw, "the backend's end"); got != tt.wantBackend {
				t.Errorf("backend saw its connection end by %s, want %s", got, tt.wantBackend)
			}
			line := d.closeLine(t, c.LocalAddr().String())
			if r := line.str("reason"); !strings.HasPrefix(r, tt.reason) || strings.Contains(r, "\n") {
				t.Errorf("close line reason: got %q, want one line starting %q", r, tt.reason)
			}
		})
	}
}

// TestCleanEndKeepsData: a relay whose directions both end in order
// closes the backend's socket in order too. The backend half-closes
// first and reads nothing until the relay has ended, so the client's
// upload, sent after that with close_notify, still sits in attlsd's
// socket buffers when attlsd closes the socket: it must all arrive,
// then an end of stream, where a reset would drop it.
func TestCleanEndKeepsData(t *testing.T) {
	upload := pattern(1<<20, 9)
	start, got := make(chan struct{}), make(chan digest, 1)
	b := startBackend(t, func(bc *backendConn) {
		bc.CloseWrite()
		select {
		case <-start:
		case <-time.After(3 * time.Second): // the upload did not fit in the buffers
		}
		offer(got, newDigest(hashAll(bc)))
	})
	d := simpleDaemon(t, b.addr, nil, nil)
	c := dialTLS(t, d.addr("127.0.0.1", 0), clientTLS(t))
	if end := ending(c); end != "eof" {
		t.Fatalf("client saw the backend's end as %s, want eof", end)
	}
	want := newDigest(hashAll(bytes.NewReader(upload)))
	if _, err := c.Write(upload); err != nil {
		t.Fatalf("client write: %v", err)
	}
	c.CloseWrite()
	line := d.closeLine(t, c.LocalAddr().String())
	close(start)
	if g := receive(t, got, "the backend's digest"); !g.equal(want) {
		t.Errorf("backend got %s, want %s", g, want)
	}
	if r := line.str("reason"); r != "closed" {
		t.Errorf("close line reason: got %q, want closed", r)
	}
}

// TestOutboundCutIsVisible: an endpoint that resets mid-download gives
// the cleartext app a reset after the bytes it was sent, not an end of
// stream that looks complete.
func TestOutboundCutIsVisible(t *testing.T) {
	answer := pattern(20_000, 8)
	endpoint := startTLSEndpoint(t, endpointTLS(t, certDir), func(c *tls.Conn) {
		io.ReadFull(c, make([]byte, 4))
		c.Write(answer)
		c.NetConn().(*net.TCPConn).SetLinger(0)
		c.NetConn().Close()
	})
	d := outboundDaemon(t, endpoint, nil, nil)
	app := dialTCP(t, d.addr("127.0.0.1", 0))
	app.Write([]byte("GET "))
	got, err := io.ReadAll(app)
	if end := endOf(err); end != "reset" || !bytes.HasPrefix(answer, got) {
		t.Errorf("app read %d bytes (a prefix of the answer: %v), then %s; "+
			"want a prefix of the %d sent, then reset",
			len(got), bytes.HasPrefix(answer, got), end, len(answer))
	}
	line := d.closeLine(t, app.LocalAddr().String())
	if r, want := line.str("reason"), "read from endpoint: "; !strings.HasPrefix(r, want) {
		t.Errorf("close line reason: got %q, want %q...", r, want)
	}
}

// ending reads c to its end and says how it ended: "eof", "reset", or
// the error.
func ending(c io.Reader) string {
	_, err := io.Copy(io.Discard, c)
	return endOf(err)
}

// endOf names the end of a stream that read err last (nil: EOF).
func endOf(err error) string {
	switch {
	case err == nil || errors.Is(err, io.EOF):
		return "eof"
	case errors.Is(err, syscall.ECONNRESET):
		return "reset"
	}
	return err.Error()
}
