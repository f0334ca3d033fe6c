package e2e

import (
	"net"
	"path/filepath"
	"slices"
	"testing"
)

// TestUnixBackend runs the demo backend on a UNIX socket and fetches from
// it through attlsd with curl. The PROXY header still carries the TCP
// client's address.
func TestUnixBackend(t *testing.T) {
	needTool(t, "curl", "curl")
	backend := startDemoBackend(t, filepath.Join(t.TempDir(), "s.sock"))
	d := simpleDaemon(t, backend, nil, nil)
	url, resolve := httpsURL(d.addr("127.0.0.1", 0))

	res := curl(t, url, resolve...)
	if res.code != 0 {
		t.Fatalf("curl: exit %d\n%s", res.code, res.stderr)
	}
	line := d.closeLine(t, res.local)
	got := parseDemo(t, res.body, line)
	want := demoAnswer{
		ProxyHeader: true, Client: res.local, Destination: d.addr("127.0.0.1", 0),
		Rule: "e2e", SNI: "localhost", ALPN: "http/1.1", TLS: true, TLSVersion: "TLSv1.3",
		SigScheme: "ecdsa_secp256r1_sha256", Method: "GET", Path: "/",
	}
	if got != want {
		t.Errorf("demo backend answer:\n got %+v\nwant %+v", got, want)
	}
	checkCloseLine(t, line, map[string]string{
		"backend": backend, "reason": "closed", "level": "info"})
}

// TestIPv6 binds a rule to ::1 and fetches https://[::1]:PORT/ with curl.
// The certificate names ::1, and the backend learns the IPv6 client.
func TestIPv6(t *testing.T) {
	needTool(t, "curl", "curl")
	ln, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		missing(t, "IPv6 loopback ::1 unavailable on this host: "+err.Error())
	}
	ln.Close()

	backend := startDemoBackend(t, "")
	d := startDaemon(t, "::1", 1, func(p []int) string {
		return environment() + inbound("v6", p[0], backend, `address = "::1"`)
	})
	addr := d.addr("::1", 0)

	res := curl(t, "https://"+addr+"/")
	if res.code != 0 {
		t.Fatalf("curl https://%s/: exit %d\n%s", addr, res.code, res.stderr)
	}
	line := d.closeLine(t, res.local)
	got := parseDemo(t, res.body, line)
	want := demoAnswer{
		ProxyHeader: true, Client: res.local, Destination: addr, Rule: "v6",
		ALPN: "http/1.1", TLS: true, TLSVersion: "TLSv1.3",
		SigScheme: "ecdsa_secp256r1_sha256", Method: "GET", Path: "/",
	}
	if got != want {
		t.Errorf("demo backend answer (no SNI for an IP literal):\n got %+v\nwant %+v", got, want)
	}
	if host, _, _ := net.SplitHostPort(res.local); host != "::1" {
		t.Errorf("curl's address: got %s, want ::1", host)
	}
	checkCloseLine(t, line, map[string]string{
		"listener": addr, "rule": "v6", "reason": "closed"})
}

// TestStartedLine checks that the daemon's start line lists every
// listener it bound, as host:port, and that each of them accepts.
func TestStartedLine(t *testing.T) {
	d := startDaemon(t, "127.0.0.1", 2, func(p []int) string {
		return environment() + inbound("tls", p[0], "127.0.0.1:9") +
			inbound("clear", p[1], "127.0.0.1:9", "tls = false", "environment =")
	})
	l, ok := d.log.find(isMessage("attlsd started"))
	if !ok {
		t.Fatal("no \"attlsd started\" line")
	}
	got := slices.Sorted(slices.Values(l.strs("listeners")))
	want := slices.Sorted(slices.Values([]string{d.addr("127.0.0.1", 0), d.addr("127.0.0.1", 1)}))
	if !slices.Equal(got, want) {
		t.Errorf("start line listeners: got %v, want %v\nline: %s", got, want, l)
	}
	for _, addr := range want {
		dialTCP(t, addr).Close()
	}
}
