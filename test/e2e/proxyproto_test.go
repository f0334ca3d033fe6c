package e2e

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
)

// TestProxyProtocolFormats checks the exact header each proxy_protocol
// setting puts in front of the stream, with a Go backend that keeps the
// raw bytes: v2 with TLVs in type order, the one-line v1 text, no header
// at all, and v2 from a cleartext (tls = false) rule, which has no TLS
// facts to tell.
func TestProxyProtocolFormats(t *testing.T) {
	type seen struct {
		bc   *backendConn
		data string
	}
	seenc := make(chan seen, 1)
	handle := func(bc *backendConn) {
		data, _ := io.ReadAll(bc)
		offer(seenc, seen{bc, string(data)})
		bc.Write([]byte("bye"))
		bc.CloseWrite()
	}
	withHeader := startBackend(t, handle)
	noHeader := startRawBackend(t, handle)

	tests := []struct {
		name     string
		attrs    []string
		backend  *backend
		tls      bool
		wantTLVs []proxyproto.PP2Type // v2 only, in order
	}{
		{"v2", nil, withHeader, true, []proxyproto.PP2Type{
			proxyproto.PP2_TYPE_ALPN, proxyproto.PP2_TYPE_AUTHORITY,
			proxyproto.PP2_TYPE_UNIQUE_ID, proxyproto.PP2_TYPE_SSL, 0xE1}},
		{"v1", []string{`proxy_protocol = "v1"`}, withHeader, true, nil},
		{"none", []string{`proxy_protocol = "none"`}, noHeader, true, nil},
		{"v2-cleartext-rule", []string{"tls = false", "environment ="}, withHeader, false, []proxyproto.PP2Type{
			proxyproto.PP2_TYPE_UNIQUE_ID, 0xE1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := startDaemon(t, "127.0.0.1", 1, func(p []int) string {
				return environment() + inbound("e2e", p[0], tt.backend.addr, tt.attrs...)
			})
			listener := d.addr("127.0.0.1", 0)
			var c net.Conn
			if tt.tls {
				c = dialTLS(t, listener, clientTLS(t))
			} else {
				c = dialTCP(t, listener)
			}
			client := c.LocalAddr().String()
			c.Write([]byte("hello"))
			c.(interface{ CloseWrite() error }).CloseWrite()
			if reply, err := io.ReadAll(c); string(reply) != "bye" || err != nil {
				t.Errorf("client read: got %q, %v; want %q", reply, err, "bye")
			}

			s := receive(t, seenc, "backend connection")
			if s.data != "hello" {
				t.Errorf("backend data after the header: got %q, want %q", s.data, "hello")
			}
			line := d.closeLine(t, client)
			switch {
			case tt.name == "none":
				// The raw backend saw "hello" as its very first bytes.
			case tt.wantTLVs == nil:
				checkV1(t, s.bc, client, listener)
			default:
				checkV2(t, s.bc, client, listener, tt.wantTLVs, line.str("conn_id"))
			}
		})
	}
}

// checkV1 compares a v1 header with the exact line it must be.
func checkV1(t *testing.T, bc *backendConn, client, listener string) {
	t.Helper()
	ch, cp, _ := net.SplitHostPort(client)
	lh, lp, _ := net.SplitHostPort(listener)
	want := fmt.Sprintf("PROXY TCP4 %s %s %s %s\r\n", ch, lh, cp, lp)
	if string(bc.Raw) != want {
		t.Errorf("v1 header: got %q, want %q", bc.Raw, want)
	}
}

// checkV2 checks a v2 header's command, family, addresses and TLV list.
func checkV2(t *testing.T, bc *backendConn, client, listener string,
	wantTLVs []proxyproto.PP2Type, connID string) {
	t.Helper()
	h := bc.Header
	if h.Version != 2 || h.Command != proxyproto.PROXY || h.TransportProtocol != proxyproto.TCPv4 {
		t.Errorf("v2 header: got version %d, command %v, family %v; want 2, PROXY, TCPv4",
			h.Version, h.Command, h.TransportProtocol)
	}
	if got := h.SourceAddr.String(); got != client {
		t.Errorf("source: got %s, want %s (the client)", got, client)
	}
	if got := h.DestinationAddr.String(); got != listener {
		t.Errorf("destination: got %s, want %s (the listener)", got, listener)
	}
	tlvs, err := h.TLVs()
	if err != nil {
		t.Fatal(err)
	}
	var types []proxyproto.PP2Type
	for _, tlv := range tlvs {
		types = append(types, tlv.Type)
	}
	if fmt.Sprint(types) != fmt.Sprint(wantTLVs) {
		t.Errorf("TLV types: got %x, want %x", types, wantTLVs)
	}
	if id, _ := bc.tlv(proxyproto.PP2_TYPE_UNIQUE_ID); id != connID || id == "" {
		t.Errorf("UNIQUE_ID: got %q, want the logged conn_id %q", id, connID)
	}
}

// TestHAProxy puts HAProxy behind attlsd as the PROXY reader (accept-proxy)
// for both header versions. HAProxy answers with the client address it
// decoded, the authority (the SNI) and the unique id, and logs the client
// address; all must match what curl and attlsd saw.
func TestHAProxy(t *testing.T) {
	haproxy := needTool(t, "haproxy", "haproxy")
	needTool(t, "curl", "curl")
	dir := t.TempDir()
	hp, hpAddr := startListening(t, haproxy, func(port int) []string {
		cfg := filepath.Join(dir, "haproxy.cfg")
		writeFile(t, cfg, fmt.Sprintf(haproxyConfig, port))
		return []string{"-f", cfg, "-db"}
	})
	d := startDaemon(t, "127.0.0.1", 2, func(p []int) string {
		return environment() + inbound("to-haproxy-v2", p[0], hpAddr) +
			inbound("to-haproxy-v1", p[1], hpAddr, `proxy_protocol = "v1"`)
	})

	for i, version := range []string{"v2", "v1"} {
		t.Run(version, func(t *testing.T) {
			url, resolve := httpsURL(d.addr("127.0.0.1", i))
			res := curl(t, url, resolve...)
			if res.code != 0 {
				t.Fatalf("curl through attlsd and HAProxy: exit %d\n%s", res.code, res.stderr)
			}
			line := d.closeLine(t, res.local)
			want := fmt.Sprintf("src=%s authority=localhost uid=%s\n", res.local, line.str("conn_id"))
			if version == "v1" { // v1 has addresses only
				want = fmt.Sprintf("src=%s authority= uid=\n", res.local)
			}
			if res.body != want {
				t.Errorf("HAProxy answer: got %q, want %q", res.body, want)
			}
			logged, err := hp.out.waitText(logTimeout, hp.exited, "e2e-log client="+res.local+" ")
			if err != nil {
				t.Errorf("HAProxy log: %v", err)
			} else if version == "v2" && !strings.Contains(logged, "authority=localhost") {
				t.Errorf("HAProxy log line: got %q, want authority=localhost", logged)
			}
		})
	}
}

// haproxyConfig takes the port to bind. HAProxy logs to its stdout.
const haproxyConfig = `global
    log stdout format raw local0 info

defaults
    mode http
    log global
    option dontlognull
    timeout connect 5s
    timeout client 10s
    timeout server 10s

frontend e2e
    bind 127.0.0.1:%d accept-proxy
    log-format "e2e-log client=%%ci:%%cp authority=%%[fc_pp_authority]"
    http-request return status 200 content-type text/plain lf-string "src=%%[src]:%%[src_port] authority=%%[fc_pp_authority] uid=%%[fc_pp_unique_id]\n"
`

// TestNginx puts nginx behind attlsd as the PROXY reader (listen ...
// proxy_protocol) for both header versions. nginx answers with
// $proxy_protocol_addr:$proxy_protocol_port and logs the same; both must
// be curl's own address.
func TestNginx(t *testing.T) {
	nginx := needTool(t, "nginx", "nginx-light")
	needTool(t, "curl", "curl")
	dir := t.TempDir()
	accessLog := filepath.Join(dir, "access.log")
	_, ngAddr := startListening(t, nginx, func(port int) []string {
		conf := filepath.Join(dir, "nginx.conf")
		writeFile(t, conf, strings.NewReplacer("DIR", dir, "PORT", itoa(port)).Replace(nginxConfig))
		return []string{"-p", dir + "/", "-c", conf, "-e", "stderr", "-g", "daemon off;"}
	})
	d := startDaemon(t, "127.0.0.1", 2, func(p []int) string {
		return environment() + inbound("to-nginx-v2", p[0], ngAddr) +
			inbound("to-nginx-v1", p[1], ngAddr, `proxy_protocol = "v1"`)
	})

	for i, version := range []string{"v2", "v1"} {
		t.Run(version, func(t *testing.T) {
			url, resolve := httpsURL(d.addr("127.0.0.1", i))
			res := curl(t, url, resolve...)
			if res.code != 0 {
				t.Fatalf("curl through attlsd and nginx: exit %d\n%s", res.code, res.stderr)
			}
			if want := res.local + "\n"; res.body != want {
				t.Errorf("nginx answer: got %q, want %q", res.body, want)
			}
			if err := waitFileLine(accessLog, "e2e-log client="+res.local+" "); err != nil {
				t.Errorf("nginx access log: %v", err)
			}
		})
	}
}

// nginxConfig keeps every path under DIR and binds 127.0.0.1:PORT.
const nginxConfig = `worker_processes 1;
error_log DIR/error.log info;
pid DIR/nginx.pid;
events { worker_connections 64; }
http {
    log_format e2e 'e2e-log client=$proxy_protocol_addr:$proxy_protocol_port remote=$remote_addr';
    access_log DIR/access.log e2e;
    client_body_temp_path DIR/client_body;
    proxy_temp_path DIR/proxy;
    fastcgi_temp_path DIR/fastcgi;
    uwsgi_temp_path DIR/uwsgi;
    scgi_temp_path DIR/scgi;
    default_type text/plain;
    server {
        listen 127.0.0.1:PORT proxy_protocol;
        location / {
            return 200 "$proxy_protocol_addr:$proxy_protocol_port\n";
        }
    }
}
`

// waitFileLine waits until a line of file contains substr.
func waitFileLine(file, substr string) error {
	deadline := time.Now().Add(logTimeout)
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile(file)
		for _, l := range strings.Split(string(b), "\n") {
			if strings.Contains(l, substr) {
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	b, _ := os.ReadFile(file)
	return fmt.Errorf("no line with %q within %s; file:\n%s", substr, logTimeout, b)
}
