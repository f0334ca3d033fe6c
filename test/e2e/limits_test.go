package e2e

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// The per-rule limits of a policy, max_connections, idle_timeout,
// half_close_timeout and write_timeout, as a client and a backend meet them through the
// binary. The timeouts are short for the tests' sake; what is checked is
// which connections end and why, with waits bounded only so that a
// broken attlsd fails the test instead of hanging it.

// tick is how often the tests' active connections send a byte: well
// inside the one-second timeouts they run under.
const tick = 200 * time.Millisecond

// TestIdleTimeout: a connection with traffic every 200 ms lives through
// twice its one-second idle_timeout; once silent, attlsd closes it and
// logs the idle timeout.
func TestIdleTimeout(t *testing.T) {
	b := startBackend(t, echo)
	d := simpleDaemon(t, b.addr, nil, []string{`idle_timeout = "1s"`})
	c := dialTLS(t, d.addr("127.0.0.1", 0), clientTLS(t))

	for i := range 2 * time.Second / tick {
		if err := echoTick(c); err != nil {
			t.Fatalf("round %d, %s into a connection active every %s: %v", i,
				time.Duration(i)*tick, tick, err)
		}
		time.Sleep(tick)
	}
	if err := echoTick(c); err != nil {
		t.Fatalf("active connection cut: %v", err)
	}

	waitClosed(t, c)
	line := d.closeLine(t, c.LocalAddr().String())
	if got, want := line.str("reason"), "idle timeout: no byte for 1s"; got != want {
		t.Errorf("close reason: got %q, want %q", got, want)
	}
}

// echoTick sends one byte through the echo backend and reads it back.
func echoTick(c net.Conn) error {
	if _, err := c.Write([]byte{'.'}); err != nil {
		return err
	}
	_, err := io.ReadFull(c, make([]byte, 1))
	return err
}

// TestHalfCloseTimeout: once the client has half-closed, a backend that
// answers slowly but steadily (a chunk every 200 ms for 2 s, under a
// one-second half_close_timeout) gets its whole answer through, and one
// that goes silent is cut at the timeout.
func TestHalfCloseTimeout(t *testing.T) {
	const chunk = "chunk;"
	hold := make(chan struct{})
	b := startBackend(t, func(bc *backendConn) {
		req, err := io.ReadAll(bc) // up to the client's half-close
		if err != nil {
			return
		}
		if string(req) == "silent" {
			<-hold // says nothing more, and keeps its side open
			return
		}
		for range 2 * time.Second / tick {
			if _, err := bc.Write([]byte(chunk)); err != nil {
				return
			}
			time.Sleep(tick)
		}
		bc.CloseWrite()
	})
	t.Cleanup(func() { close(hold) }) // before the backend's own cleanup
	d := simpleDaemon(t, b.addr, nil, []string{`half_close_timeout = "1s"`})

	tests := []struct {
		request    string
		wantBody   string
		wantReason string
	}{
		{"active", strings.Repeat(chunk, int(2*time.Second/tick)), "closed"},
		{"silent", "", "half-close timeout: no byte for 1s"},
	}
	for _, tt := range tests {
		t.Run(tt.request, func(t *testing.T) {
			c := dialTLS(t, d.addr("127.0.0.1", 0), clientTLS(t))
			c.Write([]byte(tt.request))
			if err := c.CloseWrite(); err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(c)
			if err != nil && !errIsClosed(err) {
				t.Fatalf("read the answer: %v", err)
			}
			if string(got) != tt.wantBody {
				t.Errorf("answer: got %q, want %q", got, tt.wantBody)
			}
			line := d.closeLine(t, c.LocalAddr().String())
			if r := line.str("reason"); r != tt.wantReason {
				t.Errorf("close reason: got %q, want %q", r, tt.wantReason)
			}
		})
	}
}

// TestWriteTimeout: with no idle_timeout, a backend that never reads,
// behind a client that floods and then vanishes, would hold the
// connection for ever: attlsd's write to it waits with no deadline, and
// the other direction waits on the backend's silence. write_timeout
// (2 s here) ends it. It also ends a TLS client that never reads what
// the backend floods it with: attlsd's writes then wait under TLS, where
// no write deadline may bound them. A backend that reads slowly but steadily for twice
// the timeout, while the client has sent far more than the socket
// buffers hold, keeps its connection and gets every byte.
func TestWriteTimeout(t *testing.T) {
	const size = 32 << 20
	b := startBackend(t, func(bc *backendConn) {
		bc.SetDeadline(time.Time{})
		first := make([]byte, 5)
		io.ReadFull(bc, first)
		switch string(first) {
		case "flood":
			flood(bc)
			return
		case "stuck":
			<-t.Context().Done() // reads nothing more
			return
		}
		n := int64(len(first))
		buf := make([]byte, 16<<10)
		for slow := time.Now().Add(4 * time.Second); time.Now().Before(slow); {
			k, _ := bc.Read(buf)
			n += int64(k)
			time.Sleep(tick)
		}
		k, _ := io.Copy(io.Discard, bc)
		fmt.Fprint(bc, n+k)
		bc.CloseWrite()
	})
	d := simpleDaemon(t, b.addr, nil, []string{`write_timeout = "2s"`})

	t.Run("never-reads", func(t *testing.T) {
		c := dialTLS(t, d.addr("127.0.0.1", 0), clientTLS(t))
		io.WriteString(c, "stuck")
		c.SetWriteDeadline(time.Now().Add(time.Second))
		flood(c) // until the buffers on the way are full
		c.NetConn().Close()
		line := d.closeLine(t, c.LocalAddr().String())
		want := "write timeout: backend took no byte for 2s"
		if got := line.str("reason"); got != want {
			t.Errorf("close reason: got %q, want %q", got, want)
		}
	})
	t.Run("client-never-reads", func(t *testing.T) {
		c := dialTLS(t, d.addr("127.0.0.1", 0), clientTLS(t))
		io.WriteString(c, "flood")
		line := d.closeLine(t, c.LocalAddr().String())
		want := "write timeout: client took no byte for 2s"
		if got := line.str("reason"); got != want {
			t.Errorf("close reason: got %q, want %q", got, want)
		}
	})
	t.Run("reads-slowly", func(t *testing.T) {
		c := dialTLS(t, d.addr("127.0.0.1", 0), clientTLS(t))
		c.SetDeadline(time.Now().Add(ioTimeout))
		io.WriteString(c, "slow ")
		if _, err := c.Write(make([]byte, size)); err != nil {
			t.Fatalf("client write: %v", err)
		}
		c.CloseWrite()
		got, err := io.ReadAll(c)
		if want := itoa(size + 5); err != nil || string(got) != want {
			t.Errorf("backend's count: got %q (%v), want %s", got, err, want)
		}
		line := d.closeLine(t, c.LocalAddr().String())
		if r := line.str("reason"); r != "closed" {
			t.Errorf("close reason: got %q, want closed", r)
		}
	})
}

// TestMaxConnections: with max_connections = 2 and two connections open,
// a third is refused before its handshake, logged and counted by
// attlsd_connections_refused_total; once one closes, a new one is served.
func TestMaxConnections(t *testing.T) {
	b := startBackend(t, echo)
	d, admin := adminDaemon(t, b.addr, "", []string{"max_connections = 2"})
	addr := d.addr("127.0.0.1", 0)
	api := map[string]string{"rule": "api", "direction": "inbound"}

	var open []*tls.Conn
	for range 2 {
		c := dialTLS(t, addr, clientTLS(t))
		if err := echoTick(c); err != nil {
			t.Fatalf("connection within the limit: %v", err)
		}
		open = append(open, c)
	}
	third := refusedHandshake(t, addr)
	line := d.closeLine(t, third)
	if !strings.Contains(line.str("reason"), "max_connections of 2") || line.str("level") != "warn" {
		t.Errorf("refusal line: got level %q reason %q; want warn naming max_connections of 2",
			line.str("level"), line.str("reason"))
	}
	checkMetrics(t, metricsOf(t, admin), "at the limit", []metricWant{
		{"attlsd_connections_refused_total", map[string]string{"rule": "api",
			"direction": "inbound", "reason": "max_connections"}, 1},
		{"attlsd_connections_active", api, 2},
		{"attlsd_connections_opened_total", api, 2},
	})

	open[0].Close()
	d.closeLine(t, open[0].LocalAddr().String())
	c := dialTLS(t, addr, clientTLS(t))
	if err := echoTick(c); err != nil {
		t.Fatalf("connection after a slot freed: %v", err)
	}
	checkMetrics(t, metricsOf(t, admin), "after a slot freed", []metricWant{
		{"attlsd_connections_active", api, 2},
		{"attlsd_connections_opened_total", api, 3},
	})
}

// refusedHandshake connects to addr and expects the TLS handshake to
// fail because attlsd closes the connection. It returns the client's
// address.
func refusedHandshake(t *testing.T, addr string) string {
	t.Helper()
	raw := dialTCP(t, addr)
	tc := tls.Client(raw, clientTLS(t))
	if err := tc.Handshake(); err == nil && echoTick(tc) == nil {
		t.Fatal("a connection over max_connections was served")
	}
	return raw.LocalAddr().String()
}
