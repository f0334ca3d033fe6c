package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
)

// demoAnswer is the JSON the demo backend answers with.
type demoAnswer struct {
	ProxyHeader  bool   `json:"proxy_header"`
	Client       string `json:"client"`
	Destination  string `json:"destination"`
	ConnID       string `json:"conn_id"`
	Rule         string `json:"rule"`
	SNI          string `json:"sni"`
	ALPN         string `json:"alpn"`
	TLS          bool   `json:"tls"`
	TLSVersion   string `json:"tls_version"`
	Cipher       string `json:"cipher"`
	Group        string `json:"group"`
	SigScheme    string `json:"sig_scheme"`
	CertVerified bool   `json:"client_cert_verified"`
	Method       string `json:"method"`
	Path         string `json:"path"`
}

// parseDemo decodes a demo backend answer and checks the fields that vary
// from run to run (connection id, cipher, group) against the connection's
// close line, then clears them so that the rest can be compared whole.
func parseDemo(t *testing.T, body string, line logLine) demoAnswer {
	t.Helper()
	var got demoAnswer
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatalf("demo backend answer: %v\nbody: %q", err, body)
	}
	if got.ConnID == "" || got.Cipher == "" || got.Group == "" {
		t.Errorf("demo backend answer: got conn_id %q, cipher %q, group %q; want all set",
			got.ConnID, got.Cipher, got.Group)
	}
	checkCloseLine(t, line, map[string]string{"conn_id": got.ConnID, "cipher": got.Cipher,
		"group": got.Group})
	got.ConnID, got.Cipher, got.Group = "", "", ""
	return got
}

// checkCloseLine compares fields of a "connection closed" line with want.
func checkCloseLine(t *testing.T, line logLine, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got := line.str(k); got != v {
			t.Errorf("close line %s: got %q, want %q\nline: %s", k, got, v, line)
		}
	}
}

// TestCurl fetches from the demo backend through attlsd with curl over
// TLS 1.3 and 1.2, and checks what the backend learned from the PROXY
// header and what attlsd logged.
func TestCurl(t *testing.T) {
	needTool(t, "curl", "curl")
	backend := startDemoBackend(t, "")
	d := simpleDaemon(t, backend, nil, nil)
	url, resolve := httpsURL(d.addr("127.0.0.1", 0))

	tests := []struct {
		name      string
		args      []string
		version   string
		sigScheme string // crypto/tls names the scheme only for TLS 1.3
	}{
		{"TLSv1.3", []string{"--tlsv1.3"}, "TLSv1.3", "ecdsa_secp256r1_sha256"},
		{"TLSv1.2", []string{"--tlsv1.2", "--tls-max", "1.2"}, "TLSv1.2", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := curl(t, url, append(resolve, tt.args...)...)
			if res.code != 0 {
				t.Fatalf("curl exit: got %d, want 0\n%s", res.code, res.stderr)
			}
			line := d.closeLine(t, res.local)
			got := parseDemo(t, res.body, line)
			want := demoAnswer{
				ProxyHeader: true, Client: res.local, Destination: d.addr("127.0.0.1", 0),
				Rule: "e2e", SNI: "localhost", ALPN: "http/1.1", TLS: true,
				TLSVersion: tt.version, SigScheme: tt.sigScheme, Method: "GET", Path: "/",
			}
			if got != want {
				t.Errorf("demo backend answer:\n got %+v\nwant %+v", got, want)
			}

			checkCloseLine(t, line, map[string]string{
				"level": "info", "rule": "e2e", "backend": backend, "sni": "localhost",
				"alpn": "http/1.1", "tls_version": tt.version,
				"reason": "closed", "listener": d.addr("127.0.0.1", 0),
			})
			if line.num("bytes_in") <= 0 || line.num("bytes_out") <= float64(len(res.body)) {
				t.Errorf("close line: got bytes_in %v, bytes_out %v; want > 0 and > body length %d",
					line.num("bytes_in"), line.num("bytes_out"), len(res.body))
			}
		})
	}
}

// TestOpenSSLClient sends an HTTP request with openssl s_client, asking
// for a server name and an ALPN protocol, and checks the AUTHORITY, ALPN,
// SSL, UNIQUE_ID and rule TLVs the backend received.
func TestOpenSSLClient(t *testing.T) {
	openssl := needTool(t, "openssl", "openssl")
	handle, headers := record(answerHTTP("hello from the backend\n"))
	b := startBackend(t, handle)
	d := simpleDaemon(t, b.addr, []string{`alpn = ["h2", "http/1.1"]`}, nil)

	tests := []struct {
		flag    string
		version string
	}{
		{"-tls1_2", "TLSv1.2"},
		{"-tls1_3", "TLSv1.3"},
	}
	for _, tt := range tests {
		t.Run(tt.version, func(t *testing.T) {
			req := "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
			out, errOut, code := run(t, req, openssl, "s_client", tt.flag, "-quiet",
				"-connect", d.addr("127.0.0.1", 0), "-servername", "localhost",
				"-alpn", "http/1.1", "-CAfile", caFile(), "-verify_return_error")
			if code != 0 || !strings.Contains(out, "hello from the backend") {
				t.Fatalf("openssl s_client: got exit %d, output %q; want 0 and the backend's answer\n%s",
					code, out, errOut)
			}

			bc := receive(t, headers, "backend connection")
			checkTLVs(t, bc, map[proxyproto.PP2Type]string{
				proxyproto.PP2_TYPE_AUTHORITY: "localhost",
				proxyproto.PP2_TYPE_ALPN:      "http/1.1",
				0xE1:                          "e2e",
			})
			ssl, ok := bc.ssl()
			if !ok {
				t.Fatalf("no valid SSL TLV in %x", bc.Raw)
			}
			if v, _ := ssl.SSLVersion(); v != tt.version || !ssl.ClientSSL() {
				t.Errorf("SSL TLV: got version %q, client SSL %v; want %q, true", v, ssl.ClientSSL(), tt.version)
			}

			id, _ := bc.tlv(proxyproto.PP2_TYPE_UNIQUE_ID)
			line := d.closeLine(t, bc.source())
			checkCloseLine(t, line, map[string]string{"conn_id": id, "tls_version": tt.version,
				"sni": "localhost", "alpn": "http/1.1"})
		})
	}
}

// TestOpenSSLResumption connects twice with openssl s_client over TLS
// 1.3, saving the session the first time (-sess_out) and offering it the
// second (-sess_in). The first, full handshake tells the backend the
// signature scheme of the ECDSA P-256 certificate; the second is a
// resumption ("Reused"), which signs nothing, so its PROXY header has no
// SSL_SIG_SCHEME. The second step needs the session of the first.
func TestOpenSSLResumption(t *testing.T) {
	openssl := needTool(t, "openssl", "openssl")
	handle, headers := record(answerHTTP("ok\n"))
	b := startBackend(t, handle)
	d := simpleDaemon(t, b.addr, nil, nil)
	session := filepath.Join(t.TempDir(), "session.pem")

	steps := []struct {
		name, flag  string
		wantSession string // s_client's summary line starts so
		wantScheme  string // "": no SSL_SIG_SCHEME sub-TLV
	}{
		{"full-handshake", "-sess_out", "New, TLSv1.3", "ecdsa_secp256r1_sha256"},
		{"resumed", "-sess_in", "Reused, TLSv1.3", ""},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			// -ign_eof keeps s_client reading after the request, so that it
			// takes in the session ticket that TLS 1.3 sends after the
			// handshake, and the answer.
			req := "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
			out, errOut, code := run(t, req, openssl, "s_client", "-tls1_3", "-ign_eof",
				"-connect", d.addr("127.0.0.1", 0), "-servername", "localhost",
				"-CAfile", caFile(), "-verify_return_error", st.flag, session)
			if code != 0 || !strings.Contains(out, "\n"+st.wantSession) ||
				!strings.Contains(out, "\r\n\r\nok\n") {
				t.Fatalf("openssl s_client %s: got exit %d, want 0, %q and the answer\n%s\n%s",
					st.flag, code, st.wantSession, out, errOut)
			}
			bc := receive(t, headers, "backend connection")
			ssl, ok := bc.ssl()
			if !ok {
				t.Fatalf("no valid SSL TLV in %x", bc.Raw)
			}
			var scheme string
			present := false
			for _, sub := range ssl.TLV {
				if sub.Type == proxyproto.PP2_SUBTYPE_SSL_SIG_SCHEME {
					scheme, present = string(sub.Value), true
				}
			}
			if scheme != st.wantScheme || present != (st.wantScheme != "") {
				t.Errorf("SSL_SIG_SCHEME: got %q (present %v), want %q", scheme, present, st.wantScheme)
			}
		})
	}
}

// checkTLVs compares top-level TLVs of the header with want.
func checkTLVs(t *testing.T, bc *backendConn, want map[proxyproto.PP2Type]string) {
	t.Helper()
	for typ, v := range want {
		if got, ok := bc.tlv(typ); got != v {
			t.Errorf("TLV 0x%02x: got %q (present %v), want %q", byte(typ), got, ok, v)
		}
	}
}

// pythonClient is a TLS client on Python's ssl module. It completes the
// handshake with SNI and ALPN, sends its request, then sends close_notify
// with unwrap() and keeps reading until the server's close_notify. A
// memory BIO drives the TLS object so that unwrap() does not wait for the
// server's close_notify, which would throw the response away. It prints
// what it negotiated and what it received as JSON.
const pythonClient = `
import hashlib, json, socket, ssl, sys

host, port, cafile, version, request = sys.argv[1:6]
ctx = ssl.create_default_context(cafile=cafile)
ctx.set_alpn_protocols(["http/1.1"])
v = ssl.TLSVersion.TLSv1_3 if version == "1.3" else ssl.TLSVersion.TLSv1_2
ctx.minimum_version = ctx.maximum_version = v

sock = socket.create_connection((host, int(port)), timeout=20)
incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
tls = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")

def flush():
    data = outgoing.read()
    if data:
        sock.sendall(data)

def fill():
    data = sock.recv(65536)
    if data:
        incoming.write(data)
    else:
        incoming.write_eof()
    return data

while True:
    try:
        tls.do_handshake()
        break
    except ssl.SSLWantReadError:
        flush()
        fill()
flush()

tls.write(request.encode())
try:
    tls.unwrap()  # sends close_notify; the server's comes later
except ssl.SSLWantReadError:
    pass
flush()

digest, n, ended = hashlib.sha256(), 0, "eof"
while True:
    try:
        chunk = tls.read(65536)
    except ssl.SSLWantReadError:
        if not fill():
            break
        continue
    except ssl.SSLZeroReturnError:
        ended = "close_notify"
        break
    if not chunk:
        ended = "close_notify"
        break
    digest.update(chunk)
    n += len(chunk)

print(json.dumps({"version": tls.version(), "alpn": tls.selected_alpn_protocol(),
                  "bytes": n, "sha256": digest.hexdigest(), "ended": ended}))
`

// TestPythonClient connects with Python's ssl module and half-closes with
// close_notify right after the request. The backend must see the request
// and then EOF, and the response it sends only after that EOF must reach
// Python in full, ended by attlsd's own close_notify.
func TestPythonClient(t *testing.T) {
	python := needTool(t, "python3", "python3")
	const request = "ping from python"
	response := pattern(1<<20, 7)
	wantSum := sha256.Sum256(response)

	type seen struct {
		bc      *backendConn
		request string
		err     error
	}
	seenc := make(chan seen, 1)
	b := startBackend(t, func(bc *backendConn) {
		req, err := io.ReadAll(bc) // returns at EOF: the half-close
		offer(seenc, seen{bc, string(req), err})
		if err != nil {
			return
		}
		time.Sleep(100 * time.Millisecond) // well after the EOF
		bc.Write(response)
		bc.CloseWrite()
	})
	d := simpleDaemon(t, b.addr, nil, nil)

	for _, version := range []string{"1.3", "1.2"} {
		t.Run("TLSv"+version, func(t *testing.T) {
			port := strconv.Itoa(d.ports[0])
			out, errOut, code := run(t, "", python, "-c", pythonClient,
				"127.0.0.1", port, caFile(), version, request)
			if code != 0 {
				t.Fatalf("python client exit: got %d, want 0\n%s", code, errOut)
			}

			s := receive(t, seenc, "backend connection")
			if s.err != nil || s.request != request {
				t.Errorf("backend read: got %q, %v; want %q, then EOF", s.request, s.err, request)
			}
			if sni, _ := s.bc.tlv(proxyproto.PP2_TYPE_AUTHORITY); sni != "localhost" {
				t.Errorf("AUTHORITY TLV: got %q, want %q", sni, "localhost")
			}
			if alpn, _ := s.bc.tlv(proxyproto.PP2_TYPE_ALPN); alpn != "http/1.1" {
				t.Errorf("ALPN TLV: got %q, want %q", alpn, "http/1.1")
			}

			var got struct {
				Version, ALPN, SHA256, Ended string
				Bytes                        int
			}
			if err := json.Unmarshal([]byte(out), &got); err != nil {
				t.Fatalf("python output %q: %v", out, err)
			}
			want := struct {
				Version, ALPN, SHA256, Ended string
				Bytes                        int
			}{"TLSv" + version, "http/1.1", hex.EncodeToString(wantSum[:]), "close_notify", len(response)}
			if got != want {
				t.Errorf("python client:\n got %+v\nwant %+v", got, want)
			}
			checkClean(t, d, s.bc.source(), len(request), len(response))
		})
	}
}
