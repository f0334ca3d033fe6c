package e2e

import (
	"crypto/tls"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// The per-rule limits of a policy, max_connections, idle_timeout and
// half_close_timeout, as a client and a backend meet them through the
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
