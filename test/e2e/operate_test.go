package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// adminDaemon runs attlsd with rule "api" on 127.0.0.1 in front of
// backend and its admin endpoint on another loopback port. extra adds
// policy text; args add command-line arguments.
func adminDaemon(t *testing.T, backend string, extra string, ruleAttrs []string,
	args ...string) (*daemon, string) {
	t.Helper()
	var admin string
	d := startDaemonArgs(t, "127.0.0.1", 2, func(p []int) string {
		return environment() + inbound("api", p[0], backend, ruleAttrs...) + extra
	}, func(p []int) []string {
		admin = "127.0.0.1:" + itoa(p[1])
		return append([]string{"--admin", admin}, args...)
	})
	return d, "http://" + admin
}

// get fetches an admin URL and returns the status and body.
func get(t *testing.T, u string) (int, string) {
	t.Helper()
	return doHTTP(t, http.MethodGet, u)
}

func doHTTP(t *testing.T, method, u string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// metric returns the value of the sample name{labels} in a Prometheus
// text exposition, and whether it is there. labels must all match; the
// sample may have more.
func metric(body, name string, labels map[string]string) (float64, bool) {
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, "#") || !strings.HasPrefix(line, name) {
			continue
		}
		rest := line[len(name):]
		set := ""
		if strings.HasPrefix(rest, "{") {
			end := strings.Index(rest, "}")
			set, rest = rest[1:end], rest[end+1:]
		} else if !strings.HasPrefix(rest, " ") {
			continue // a longer name
		}
		ok := true
		for k, v := range labels {
			if !strings.Contains(","+set+",", ","+k+"="+strconv.Quote(v)+",") {
				ok = false
			}
		}
		if !ok {
			continue
		}
		f, err := strconv.ParseFloat(strings.Fields(rest)[0], 64)
		return f, err == nil
	}
	return 0, false
}

func TestAdminEndpoints(t *testing.T) {
	handler, conns := record(echo)
	b := startBackend(t, handler)
	d, admin := adminDaemon(t, b.addr, "", nil)
	addr := d.addr("127.0.0.1", 0)

	if code, body := get(t, admin+"/healthz"); code != 200 || strings.TrimSpace(body) != "ok" {
		t.Errorf("/healthz: %d %q, want 200 ok", code, body)
	}
	if code, body := get(t, admin+"/readyz"); code != 200 || !strings.Contains(body, "generation 1") {
		t.Errorf("/readyz: %d %q, want 200 naming generation 1", code, body)
	}
	if l, ok := d.log.find(isMessage("attlsd started")); !ok || l.str("admin") != strings.TrimPrefix(admin, "http://") {
		t.Errorf("started line does not name the admin address %s", admin)
	}

	// A live connection, looked up the way a backend would: by the two
	// addresses of the connection it accepted.
	c := dialTLS(t, addr, clientTLS(t))
	c.Write([]byte("ping"))
	if _, err := io.ReadFull(c, make([]byte, 4)); err != nil {
		t.Fatal(err)
	}
	bc := receive(t, conns, "backend connection")
	q := url.Values{"peer": {bc.RemoteAddr().String()}, "local": {bc.LocalAddr().String()}}
	code, body := get(t, admin+"/connections?"+q.Encode())
	var list []map[string]any
	if code != 200 || json.Unmarshal([]byte(body), &list) != nil || len(list) != 1 {
		t.Fatalf("/connections?%s: %d %s; want one connection", q.Encode(), code, body)
	}
	got := list[0]
	want := map[string]any{"rule": "api", "client": c.LocalAddr().String(), "direction": "inbound",
		"tls_version": "TLSv1.3", "sni": "localhost", "alpn": "http/1.1", "state": "relay",
		"generation": float64(1), "bytes_in": float64(4), "bytes_out": float64(4)}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("/connections %s: got %v, want %v", k, got[k], v)
		}
	}
	if _, body := get(t, admin+"/connections?peer=127.0.0.1:1"); strings.TrimSpace(body) != "[]" {
		t.Errorf("/connections for an unknown pair: %s, want []", body)
	}
	if code, _ := get(t, admin+"/connections?peer=nonsense"); code != 400 {
		t.Errorf("/connections with a bad address: %d, want 400", code)
	}
	c.Close()
	d.closeLine(t, c.LocalAddr().String())

	// Traffic the metrics must have counted: one good connection, one
	// cleartext client on the TLS port.
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	raw.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
	io.Copy(io.Discard, raw)
	raw.Close()
	d.closeLine(t, raw.LocalAddr().String())

	_, m := get(t, admin+"/metrics")
	api := map[string]string{"rule": "api", "direction": "inbound"}
	for _, w := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"attlsd_connections_opened_total", api, 2},
		{"attlsd_connections_closed_total", api, 2},
		{"attlsd_bytes_in_total", api, 4},
		{"attlsd_bytes_out_total", api, 4},
		{"attlsd_handshake_failures_total", map[string]string{"reason": "cleartext"}, 1},
		{"attlsd_handshake_duration_seconds_count", map[string]string{"direction": "inbound"}, 1},
		{"attlsd_policy_generation", nil, 1},
		{"attlsd_reloads_total", map[string]string{"result": "applied"}, 0},
	} {
		if v, ok := metric(m, w.name, w.labels); !ok || v != w.want {
			t.Errorf("metric %s%v: got %v (present %t), want %v", w.name, w.labels, v, ok, w.want)
		}
	}
	if v, ok := metric(m, "attlsd_certificate_expiry_seconds",
		map[string]string{"environment": "web", "role": "certificate"}); !ok || v < 300*24*3600 {
		t.Errorf("certificate expiry: %v (present %t), want about a year", v, ok)
	}

	// POST /reload applies; a broken policy is rejected with its position.
	if code, body := doHTTP(t, http.MethodPost, admin+"/reload"); code != 200 || !strings.Contains(body, "generation 2") {
		t.Errorf("POST /reload: %d %q, want 200 naming generation 2", code, body)
	}
	good, _ := os.ReadFile(d.policy)
	writeFile(t, d.policy, string(good)+"\ninbound \"broken\" {\n  port = 0\n}\n")
	code, body = doHTTP(t, http.MethodPost, admin+"/reload")
	if code != 422 || !strings.Contains(body, "policy.hcl:") || !strings.Contains(body, "Invalid port") {
		t.Errorf("POST /reload of a broken policy: %d %q, want 422 with file:line:col", code, body)
	}
	writeFile(t, d.policy, string(good))
	_, m = get(t, admin+"/metrics")
	if v, _ := metric(m, "attlsd_reloads_total", map[string]string{"result": "rejected"}); v < 1 {
		t.Errorf("rejected reloads: %v, want at least 1", v)
	}
	if code, body := get(t, admin+"/policy"); code != 200 || !strings.Contains(body, `"generation"`) ||
		!strings.Contains(body, "api") {
		t.Errorf("/policy: %d %s", code, body)
	}
	if code, _ := doHTTP(t, http.MethodGet, admin+"/reload"); code != http.StatusMethodNotAllowed {
		t.Errorf("GET /reload: %d, want 405", code)
	}
}

// TestAdminLoopbackByDefault: a port alone binds the admin endpoint to
// loopback.
func TestAdminLoopbackByDefault(t *testing.T) {
	b := startBackend(t, echo)
	var port int
	d := startDaemonArgs(t, "127.0.0.1", 2, func(p []int) string {
		return environment() + inbound("api", p[0], b.addr)
	}, func(p []int) []string {
		port = p[1]
		return []string{"--admin", itoa(p[1])}
	})
	l, _ := d.log.find(isMessage("attlsd started"))
	if got := l.str("admin"); got != "127.0.0.1:"+itoa(port) {
		t.Errorf("--admin %d listens on %q, want 127.0.0.1:%d", port, got, port)
	}
}

// TestDrain: at SIGTERM, a connection in mid-transfer finishes, readiness
// turns 503, new connections are refused, and attlsd exits 0.
func TestDrain(t *testing.T) {
	release := make(chan struct{})
	b := startBackend(t, func(bc *backendConn) {
		bufio.NewReader(bc).ReadString('\n')
		bc.Write([]byte("first half;"))
		<-release
		bc.Write([]byte("second half"))
		bc.CloseWrite()
		io.Copy(io.Discard, bc)
	})
	d, admin := adminDaemon(t, b.addr, "", nil, "--drain-timeout", "30s")
	addr := d.addr("127.0.0.1", 0)

	c := dialTLS(t, addr, clientTLS(t))
	c.Write([]byte("go\n"))
	buf := make([]byte, len("first half;"))
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatal(err)
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	if _, err := d.log.wait(5*time.Second, d.exited, isMessage("draining: no new connections; open ones may finish")); err != nil {
		t.Fatal(err)
	}
	if code, body := get(t, admin+"/readyz"); code != 503 || !strings.Contains(body, "draining") {
		t.Errorf("/readyz while draining: %d %q, want 503 draining", code, body)
	}
	if nc, err := net.DialTimeout("tcp", addr, 2*time.Second); err == nil {
		nc.Close()
		t.Errorf("a new connection during the drain was accepted")
	}
	select {
	case <-d.exited:
		t.Fatal("attlsd exited with a connection still in transfer")
	case <-time.After(300 * time.Millisecond):
	}
	close(release)
	rest, err := io.ReadAll(c)
	if err != nil || string(rest) != "second half" {
		t.Errorf("rest of the transfer after SIGTERM: %q, %v", rest, err)
	}
	c.Close()
	d.stop(t) // already signalled: waits for the exit and checks status 0
	l := d.closeLineAfterExit(t, c.LocalAddr().String())
	if l.str("reason") != "closed" {
		t.Errorf("drained connection ended with %q, want closed", l.str("reason"))
	}
}

// TestDrainSecondSignal: a second SIGTERM ends the drain at once.
func TestDrainSecondSignal(t *testing.T) {
	b := startBackend(t, echo)
	d, _ := adminDaemon(t, b.addr, "", nil, "--drain-timeout", "10m")
	c := dialTLS(t, d.addr("127.0.0.1", 0), clientTLS(t))
	c.Write([]byte("ping"))
	io.ReadFull(c, make([]byte, 4))
	d.cmd.Process.Signal(syscall.SIGTERM)
	if _, err := d.log.wait(5*time.Second, d.exited, isMessage("draining: no new connections; open ones may finish")); err != nil {
		t.Fatal(err)
	}
	d.stop(t) // the second SIGTERM; stop fails the test unless attlsd exits 0 promptly
	if _, ok := d.log.find(isMessage("second signal; closing every connection now")); !ok {
		t.Error("no log line for the second signal")
	}
}

// TestDrainTimeout: connections still open when the drain timeout ends
// are closed and attlsd exits 0.
func TestDrainTimeout(t *testing.T) {
	b := startBackend(t, echo)
	d, _ := adminDaemon(t, b.addr, "", nil, "--drain-timeout", "500ms")
	c := dialTLS(t, d.addr("127.0.0.1", 0), clientTLS(t))
	c.Write([]byte("ping"))
	io.ReadFull(c, make([]byte, 4))
	d.stop(t)
	if _, ok := d.log.find(isMessage("drain timeout reached; closing the remaining connections")); !ok {
		t.Error("no log line for the drain timeout")
	}
	if _, err := c.Read(make([]byte, 1)); !errIsClosed(err) {
		t.Errorf("connection after the drain timeout: %v, want closed", err)
	}
}

// metricsOf fetches and returns the metrics text.
func metricsOf(t *testing.T, admin string) string {
	t.Helper()
	_, m := get(t, admin+"/metrics")
	return m
}

var _ = fmt.Sprintf
