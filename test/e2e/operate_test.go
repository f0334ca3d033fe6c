package e2e

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
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
	return adminDaemonPorts(t, 1, func(p []int) string {
		return environment() + inbound("api", p[0], backend, ruleAttrs...) + extra
	}, args...)
}

// adminDaemonPorts runs attlsd on the policy that makePolicy writes for
// nports fresh ports, with its admin endpoint on one more, and returns
// the daemon and the endpoint's URL.
func adminDaemonPorts(t *testing.T, nports int, makePolicy func(ports []int) string,
	args ...string) (*daemon, string) {
	t.Helper()
	var admin string
	d := startDaemonArgs(t, "127.0.0.1", nports+1, makePolicy, func(p []int) []string {
		admin = "127.0.0.1:" + itoa(p[nports])
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

	api := map[string]string{"rule": "api", "direction": "inbound"}
	checkMetrics(t, metricsOf(t, admin), "before any connection", []metricWant{
		{"attlsd_connections_active", api, 0},
		{"attlsd_connections_opened_total", api, 0},
		{"attlsd_bytes_in_total", api, 0},
	})

	// A live connection, looked up the way a backend would: by the two
	// addresses of the connection it accepted.
	c := dialTLS(t, addr, clientTLS(t))
	c.Write([]byte("ping"))
	if _, err := io.ReadFull(c, make([]byte, 4)); err != nil {
		t.Fatal(err)
	}
	bc := receive(t, conns, "backend connection")
	checkMetrics(t, metricsOf(t, admin), "with a connection open", []metricWant{
		{"attlsd_connections_active", api, 1},
		{"attlsd_bytes_in_total", api, 4},
	})
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

	m := metricsOf(t, admin)
	checkMetrics(t, m, "after two connections", []metricWant{
		{"attlsd_connections_active", api, 0},
		{"attlsd_connections_opened_total", api, 2},
		{"attlsd_connections_closed_total", api, 2},
		{"attlsd_bytes_in_total", api, 4},
		{"attlsd_bytes_out_total", api, 4},
		{"attlsd_handshake_failures_total", map[string]string{"reason": "cleartext"}, 1},
		{"attlsd_handshake_duration_seconds_count", map[string]string{"direction": "inbound"}, 1},
		{"attlsd_policy_generation", nil, 1},
		{"attlsd_reloads_total", map[string]string{"result": "applied"}, 0},
	})
	if v, ok := metric(m, "attlsd_certificate_expiry_seconds",
		map[string]string{"environment": "web", "role": "certificate"}); !ok || v < 300*24*3600 {
		t.Errorf("certificate expiry: %v (present %t), want about a year", v, ok)
	}

	// POST /reload applies; a broken policy is rejected with its position.
	if code, body := doHTTP(t, http.MethodPost, admin+"/reload"); code != 200 || !strings.Contains(body, "generation 2") {
		t.Errorf("POST /reload: %d %q, want 200 naming generation 2", code, body)
	}
	checkMetrics(t, metricsOf(t, admin), "after POST /reload", []metricWant{
		{"attlsd_reloads_total", map[string]string{"result": "applied"}, 1},
		{"attlsd_policy_generation", nil, 2},
	})
	checkPolicyView(t, admin, d.policy, 2)
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
	if code, _ := doHTTP(t, http.MethodGet, admin+"/reload"); code != http.StatusMethodNotAllowed {
		t.Errorf("GET /reload: %d, want 405", code)
	}
}

// metricWant is one sample a test expects.
type metricWant struct {
	name   string
	labels map[string]string
	want   float64
}

// checkMetrics checks samples of a metrics text; when names the moment.
func checkMetrics(t *testing.T, text, when string, wants []metricWant) {
	t.Helper()
	for _, w := range wants {
		if v, ok := metric(text, w.name, w.labels); !ok || v != w.want {
			t.Errorf("%s: metric %s%s: got %v (present %t), want %v", when, w.name,
				labelText(w.labels), v, ok, w.want)
		}
	}
}

// labelText prints labels as a Prometheus label set.
func labelText(labels map[string]string) string {
	var parts []string
	for k, v := range labels {
		parts = append(parts, k+"="+strconv.Quote(v))
	}
	slices.Sort(parts)
	return "{" + strings.Join(parts, ",") + "}"
}

// checkPolicyView compares /policy with attlsd show --json of the same
// file: the same view, field for field, under the running generation.
func checkPolicyView(t *testing.T, admin, file string, gen float64) {
	t.Helper()
	code, body := get(t, admin+"/policy")
	var got struct {
		Generation float64 `json:"generation"`
		Policy     any     `json:"policy"`
	}
	if err := json.Unmarshal([]byte(body), &got); code != 200 || err != nil {
		t.Fatalf("/policy: %d %v\n%s", code, err, body)
	}
	stdout, stderr, exit := run(t, "", attlsdBin, "show", "--json", file)
	var want any
	if err := json.Unmarshal([]byte(stdout), &want); exit != 0 || err != nil {
		t.Fatalf("attlsd show --json: exit %d, %v\n%s", exit, err, stderr)
	}
	if got.Generation != gen {
		t.Errorf("/policy generation: got %v, want %v", got.Generation, gen)
	}
	if !reflect.DeepEqual(got.Policy, want) {
		g, _ := json.MarshalIndent(got.Policy, "", "  ")
		t.Errorf("/policy differs from attlsd show --json:\ngot  %s\nwant %s", g, stdout)
	}
}

// TestConnectionsFilter: each filter of /connections picks the right
// connections among several: two rules, each in front of its own
// backend, one connection each.
func TestConnectionsFilter(t *testing.T) {
	handleA, connsA := record(echo)
	handleB, connsB := record(echo)
	a, b := startBackend(t, handleA), startBackend(t, handleB)
	d, admin := adminDaemonPorts(t, 2, func(p []int) string {
		return environment() + inbound("a", p[0], a.addr) + inbound("b", p[1], b.addr)
	})
	open := func(i int, conns <-chan *backendConn) (string, *backendConn) {
		c := dialTLS(t, d.addr("127.0.0.1", i), clientTLS(t))
		c.Write([]byte("ping"))
		if _, err := io.ReadFull(c, make([]byte, 4)); err != nil {
			t.Fatal(err)
		}
		return c.LocalAddr().String(), receive(t, conns, "backend connection")
	}
	clientA, bcA := open(0, connsA)
	clientB, bcB := open(1, connsB)
	peerA, localA := bcA.RemoteAddr().String(), bcA.LocalAddr().String()
	peerB, localB := bcB.RemoteAddr().String(), bcB.LocalAddr().String()

	tests := []struct {
		name  string
		query url.Values
		want  []string // the clients listed, oldest first
	}{
		{"no filter", url.Values{}, []string{clientA, clientB}},
		{"pair a", url.Values{"peer": {peerA}, "local": {localA}}, []string{clientA}},
		{"pair b", url.Values{"peer": {peerB}, "local": {localB}}, []string{clientB}},
		{"peer only", url.Values{"peer": {peerB}}, []string{clientB}},
		{"local only a", url.Values{"local": {localA}}, []string{clientA}},
		{"local only b", url.Values{"local": {localB}}, []string{clientB}},
		{"wrong local", url.Values{"local": {"127.0.0.1:1"}}, nil},
		{"crossed pair", url.Values{"peer": {peerA}, "local": {localB}}, nil},
		{"rule", url.Values{"rule": {"b"}}, []string{clientB}},
		{"direction", url.Values{"direction": {"outbound"}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := get(t, admin+"/connections?"+tt.query.Encode())
			var list []proxyConn
			if err := json.Unmarshal([]byte(body), &list); code != 200 || err != nil {
				t.Fatalf("/connections?%s: %d %v\n%s", tt.query.Encode(), code, err, body)
			}
			var got []string
			for _, c := range list {
				got = append(got, c.Client)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("/connections?%s: got clients %v, want %v", tt.query.Encode(), got, tt.want)
			}
		})
	}
}

// TestConnectionsBadFilter: a filter of /connections with a value it
// cannot take is refused with 400 and what it takes, rather than
// matching nothing.
func TestConnectionsBadFilter(t *testing.T) {
	_, admin := adminDaemon(t, "127.0.0.1:1", "", nil)
	tests := []struct {
		name  string
		query url.Values
		want  []string // in the answer's body
	}{
		{"direction", url.Values{"direction": {"sideways"}},
			[]string{`"sideways"`, "inbound", "outbound"}},
		{"peer", url.Values{"peer": {"nonsense"}}, []string{"peer"}},
		{"local port", url.Values{"local": {"127.0.0.1:http"}}, []string{"local", `"http"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := get(t, admin+"/connections?"+tt.query.Encode())
			if code != http.StatusBadRequest {
				t.Errorf("/connections?%s: got %d %q, want 400", tt.query.Encode(), code, body)
			}
			for _, w := range tt.want {
				if !strings.Contains(body, w) {
					t.Errorf("/connections?%s: got body %q, want it to name %s",
						tt.query.Encode(), body, w)
				}
			}
		})
	}
}

// proxyConn is the part of a /connections entry the tests read.
type proxyConn struct {
	Client  string `json:"client"`
	Rule    string `json:"rule"`
	BytesIn int64  `json:"bytes_in"`
}

// TestConnectionsFoundOnAccept: a backend that asks /connections about a
// connection the moment it accepts it, before reading a byte, finds it
// every time: attlsd records its side of the connection before it writes
// to it.
func TestConnectionsFoundOnAccept(t *testing.T) {
	const rounds = 300
	var adminURL atomic.Value // set before the first connection
	found := make(chan error, 1)
	b := startRawBackend(t, func(bc *backendConn) {
		q := url.Values{"peer": {bc.RemoteAddr().String()}, "local": {bc.LocalAddr().String()}}
		offer(found, lookupOne(adminURL.Load().(string)+"/connections?"+q.Encode()))
		io.Copy(io.Discard, bc)
	})
	d, admin := adminDaemon(t, b.addr, "", nil)
	adminURL.Store(admin)
	cfg := clientTLS(t)
	missed := 0
	for i := range rounds {
		c := dialTLS(t, d.addr("127.0.0.1", 0), cfg)
		if err := receive(t, found, "lookup"); err != nil {
			missed++
			if missed == 1 {
				t.Errorf("connection %d: %v", i, err)
			}
		}
		c.Close()
	}
	if missed > 0 {
		t.Errorf("/connections missed %d of %d connections at accept, want 0", missed, rounds)
	}
}

// lookupOne asks the admin endpoint and wants exactly one connection.
func lookupOne(u string) error {
	resp, err := http.Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var list []proxyConn
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		return err
	}
	if len(list) != 1 || list[0].Rule != "api" {
		return fmt.Errorf("got %+v, want one connection of rule api", list)
	}
	return nil
}

// TestBackendFailureMetric: a backend that cannot be reached is counted
// by rule and reason: refused, no socket, or no answer within the rule's
// connect_timeout.
func TestBackendFailureMetric(t *testing.T) {
	tests := []struct {
		name      string
		backend   func(t *testing.T) string
		ruleAttrs []string
		reason    string
	}{
		{"tcp", closedEndpoint, nil, "connect_refused"},
		{"unix", func(t *testing.T) string {
			return "unix:" + filepath.Join(t.TempDir(), "nobody-home.sock")
		}, nil, "no_socket"},
		{"tcp-unanswering", unansweringBackend, []string{`connect_timeout = "1s"`},
			"connect_timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, admin := adminDaemon(t, tt.backend(t), "", tt.ruleAttrs)
			c := dialTLS(t, d.addr("127.0.0.1", 0), clientTLS(t))
			waitClosed(t, c)
			d.closeLine(t, c.LocalAddr().String())
			checkMetrics(t, metricsOf(t, admin), "after a dead backend", []metricWant{
				{"attlsd_backend_failures_total", map[string]string{"rule": "api", "reason": tt.reason}, 1},
				{"attlsd_connections_opened_total", map[string]string{"rule": "api"}, 1},
			})
		})
	}
}

// TestCertificateExpiryMetric: a CA named twice (on its own and inside a
// bundle) and a chain with an intermediate still give a working scrape,
// with one expiry sample per certificate and role.
func TestCertificateExpiryMetric(t *testing.T) {
	dir := t.TempDir()
	pki := chainPKI(t, dir)
	b := startBackend(t, echo)
	d, admin := adminDaemonPorts(t, 1, func(p []int) string {
		return block("environment", "web",
			"certificate = "+quote(filepath.Join(dir, "chain.pem")),
			"private_key = "+quote(filepath.Join(dir, "key.pem")),
			"trust = ["+quote(filepath.Join(dir, "root.pem"))+", "+
				quote(filepath.Join(dir, "bundle.pem"))+"]") +
			inbound("api", p[0], b.addr)
	})
	cfg := clientTLS(t)
	cfg.RootCAs, cfg.NextProtos = pki.roots, nil
	dialTLS(t, d.addr("127.0.0.1", 0), cfg) // the chain is served

	code, text := get(t, admin+"/metrics")
	if code != 200 {
		t.Fatalf("/metrics: got %d, want 200\n%s", code, text)
	}
	for _, w := range []struct {
		role string
		cert *x509.Certificate
	}{
		{"certificate", pki.leaf},
		{"intermediate", pki.intermediate},
		{"trust", pki.root},
		{"trust", pki.other},
	} {
		labels := map[string]string{"environment": "web", "role": w.role,
			"subject": w.cert.Subject.String(), "serial": fmt.Sprintf("%X", w.cert.SerialNumber)}
		n := countSamples(text, "attlsd_certificate_expiry_seconds", labels)
		v, _ := metric(text, "attlsd_certificate_expiry_seconds", labels)
		if want := time.Until(w.cert.NotAfter).Seconds(); n != 1 || v < want-1 || v > want+600 {
			t.Errorf("expiry of %s %q: got %d samples, value %v; want 1, about %v",
				w.role, w.cert.Subject.CommonName, n, v, want)
		}
	}
	if n := countSamples(text, "attlsd_certificate_expiry_seconds", nil); n != 4 {
		t.Errorf("expiry samples: got %d, want 4", n)
	}
}

// countSamples counts the samples of name whose labels include labels.
func countSamples(text, name string, labels map[string]string) int {
	n := 0
	for _, line := range strings.Split(text, "\n") {
		if _, ok := metric(line, name, labels); ok {
			n++
		}
	}
	return n
}

// chainCerts is a root CA, an intermediate it signed, a server
// certificate for localhost the intermediate signed, and another CA.
type chainCerts struct {
	root, intermediate, leaf, other *x509.Certificate
	roots                           *x509.CertPool
}

// chainPKI writes into dir: chain.pem (leaf then intermediate), key.pem,
// root.pem, and bundle.pem, which holds another CA and the root again.
func chainPKI(t *testing.T, dir string) chainCerts {
	t.Helper()
	now := time.Now()
	ca := func(name string, days int, parent *x509.Certificate, key *ecdsa.PrivateKey) (*ecdsa.PrivateKey, *x509.Certificate) {
		return newCert(t, nil, &x509.Certificate{
			Subject: pkix.Name{CommonName: name}, NotBefore: now.Add(-time.Hour),
			NotAfter: now.Add(time.Duration(days) * 24 * time.Hour), IsCA: true,
			BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
		}, parent, key)
	}
	rootKey, root := ca("attlsd e2e root", 300, nil, nil)
	midKey, mid := ca("attlsd e2e intermediate", 200, root, rootKey)
	_, other := ca("attlsd e2e other CA", 250, nil, nil)
	leafKey, leaf := newCert(t, nil, &x509.Certificate{
		Subject: pkix.Name{CommonName: "attlsd e2e chained server"}, DNSNames: []string{"localhost"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(100 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, mid, midKey)

	pemOf := func(cs ...*x509.Certificate) []byte {
		var out []byte
		for _, c := range cs {
			out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
		}
		return out
	}
	writeFile(t, filepath.Join(dir, "chain.pem"), string(pemOf(leaf, mid)))
	writeFile(t, filepath.Join(dir, "root.pem"), string(pemOf(root)))
	writeFile(t, filepath.Join(dir, "bundle.pem"), string(pemOf(other, root)))
	der, err := x509.MarshalPKCS8PrivateKey(leafKey)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, filepath.Join(dir, "key.pem"), "PRIVATE KEY", der)
	roots := x509.NewCertPool()
	roots.AddCert(root)
	return chainCerts{root: root, intermediate: mid, leaf: leaf, other: other, roots: roots}
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
	// The drain ends by itself once the last connection has: no other
	// signal is sent.
	d.waitExit(t)
	l := d.closeLineAfterExit(t, c.LocalAddr().String())
	if l.str("reason") != "closed" {
		t.Errorf("drained connection ended with %q, want closed", l.str("reason"))
	}
	for _, msg := range []string{"second signal; closing every connection now",
		"drain timeout reached; closing the remaining connections"} {
		if _, ok := d.log.find(isMessage(msg)); ok {
			t.Errorf("drain that finished on its own logged %q", msg)
		}
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

// TestDrainStuckBackend: a relay blocked writing to a backend that
// accepted and stopped reading, while its client floods, does not keep
// attlsd from stopping, at a second signal or at the drain timeout: both
// sockets of the connection are closed and attlsd exits 0.
func TestDrainStuckBackend(t *testing.T) {
	tests := []struct {
		name         string
		drainTimeout string
		second       bool // send a second SIGTERM
		wantLine     string
	}{
		{"second-signal", "10m", true, "second signal; closing every connection now"},
		{"drain-timeout", "500ms", false, "drain timeout reached; closing the remaining connections"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			release := make(chan struct{})
			b := startRawBackend(t, func(*backendConn) { <-release })
			t.Cleanup(func() { close(release) })
			d, admin := adminDaemon(t, b.addr, "", nil, "--drain-timeout", tt.drainTimeout)
			c := dialTLS(t, d.addr("127.0.0.1", 0), clientTLS(t))
			go flood(c)
			waitStalled(t, admin)

			d.cmd.Process.Signal(syscall.SIGTERM)
			if _, err := d.log.wait(logTimeout, d.exited, isMessage("draining: no new connections; open ones may finish")); err != nil {
				t.Fatal(err)
			}
			if tt.second {
				d.cmd.Process.Signal(syscall.SIGTERM)
			}
			d.waitExit(t)
			if _, ok := d.log.find(isMessage(tt.wantLine)); !ok {
				t.Errorf("no %q line", tt.wantLine)
			}
			// The connection's goroutine ended: it logged its close.
			d.closeLineAfterExit(t, c.LocalAddr().String())
		})
	}
}

// waitStalled waits until the one open connection's bytes towards the
// backend stop growing: the relay is then blocked writing to a backend
// that does not read.
func waitStalled(t *testing.T, admin string) {
	t.Helper()
	deadline := time.Now().Add(ioTimeout)
	last, still := int64(-1), 0
	for still < 5 {
		if time.Now().After(deadline) {
			t.Fatal("the relay never stalled")
		}
		time.Sleep(50 * time.Millisecond)
		_, body := get(t, admin+"/connections")
		var list []proxyConn
		if json.Unmarshal([]byte(body), &list) != nil || len(list) != 1 {
			t.Fatalf("/connections: %s; want one connection", body)
		}
		if n := list[0].BytesIn; n > 0 && n == last {
			still++
		} else {
			last, still = n, 0
		}
	}
}

// metricsOf fetches and returns the metrics text.
func metricsOf(t *testing.T, admin string) string {
	t.Helper()
	_, m := get(t, admin+"/metrics")
	return m
}
