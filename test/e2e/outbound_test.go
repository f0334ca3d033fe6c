package e2e

import (
	"bytes"
	"crypto/elliptic"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The tests in this file drive port-mapped outbound rules: an app speaks
// cleartext to a local port of attlsd, which originates verified TLS to
// the rule's endpoint.

// TestOutboundOpenSSLServer puts openssl s_server, in its -www mode, at
// the endpoint and fetches its status page with curl over plain HTTP
// through attlsd: with server authentication only, and with a client
// certificate the server demands and verifies, each over TLS 1.3 and 1.2. The
// page is the server's own account of the session, so its version,
// cipher and verified client certificate must agree with attlsd's log.
func TestOutboundOpenSSLServer(t *testing.T) {
	needTool(t, "curl", "curl")
	verify := []string{"-Verify", "1", "-verify_return_error", "-CAfile", caFile()}
	clientSeen := []string{"Client certificate", "Subject: CN=attlsd dev client",
		"Verify return code: 0 (ok)"}
	tests := []struct {
		name     string
		version  string
		server   []string // s_server arguments beyond the certificate
		envAttrs []string
		wantPage []string // what the page says beyond the version
	}{
		{"server-auth/TLSv1.3", "1.3", nil, nil, nil},
		{"server-auth/TLSv1.2", "1.2", nil, []string{tlsVersion("1.2")}, nil},
		{"client-cert/TLSv1.3", "1.3", verify, clientCertAttrs(), clientSeen},
		{"client-cert/TLSv1.2", "1.2", verify,
			append(clientCertAttrs(), tlsVersion("1.2")), clientSeen},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			endpoint := startSServer(t, append(certArgs(certDir), tt.server...)...)
			d := outboundDaemon(t, endpoint, tt.envAttrs, nil)

			res := curl(t, "http://"+d.addr("127.0.0.1", 0)+"/")
			if res.code != 0 {
				t.Fatalf("curl through the outbound rule: got exit %d, want 0\n%s",
					res.code, res.stderr)
			}
			line := d.closeLine(t, res.local)
			checkCloseLine(t, line, map[string]string{"level": "info", "reason": "closed",
				"rule": outRule, "direction": "outbound", "endpoint": endpoint,
				"remote": endpoint, "sni": "127.0.0.1", "tls_version": "TLSv" + tt.version})

			want := append([]string{"Protocol  : TLSv" + tt.version}, tt.wantPage...)
			if tt.version == "1.3" { // OpenSSL names TLS 1.3 suites as IANA does
				want = append(want, "Cipher    : "+line.str("cipher"))
			}
			for _, w := range want {
				if !strings.Contains(res.body, w) {
					t.Errorf("s_server page: no %q\npage:\n%s", w, res.body)
				}
			}
			if line.num("bytes_out") <= float64(len(res.body)) || line.num("bytes_in") <= 0 {
				t.Errorf("close line: got bytes_in %v, bytes_out %v; want a request in "+
					"and a response of more than the %d-byte body out",
					line.num("bytes_in"), line.num("bytes_out"), len(res.body))
			}
		})
	}
}

// TestOutboundCipherAndCurve checks that an environment's cipher_suites
// and curves reach the endpoint: openssl s_server, tracing its handshakes,
// says which suite its ServerHello chose and which group its key exchange
// used (the ServerKeyExchange curve in TLS 1.2, the key share in TLS
// 1.3), and its status page lists what attlsd offered. The server key is
// on P-384, since a TLS 1.2 server takes the client's curves as the only
// ones its ECDSA certificate may use (RFC 8422 5.1.1).
func TestOutboundCipherAndCurve(t *testing.T) {
	needTool(t, "curl", "curl")
	pki := serverPKI(t, serverSpec{curve: elliptic.P384()})
	const suite12 = "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384" // not Go's first choice
	tests := []struct {
		name     string
		envAttrs []string
		suite    string   // "" when TLS 1.3 leaves it to Go
		wantPage []string // on the status page
	}{
		{"TLSv1.2", []string{tlsVersion("1.2"), `cipher_suites = ["` + suite12 + `"]`,
			`curves = ["P-384"]`}, suite12, []string{
			"Ciphers common between both SSL end points:\nECDHE-ECDSA-AES256-GCM-SHA384\n",
			"Supported groups: secp384r1\n", "Protocol  : TLSv1.2\n"}},
		{"TLSv1.3", []string{tlsVersion("1.3"), `curves = ["P-384"]`}, "", []string{
			"Supported groups: secp384r1\n", "Protocol  : TLSv1.3\n"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			server, endpoint := runSServer(t, append(certArgs(pki), "-trace")...)
			env := append([]string{trustAttr(filepath.Join(pki, "ca.pem"))}, tt.envAttrs...)
			d := outboundDaemon(t, endpoint, env, nil)

			res := curl(t, "http://"+d.addr("127.0.0.1", 0)+"/")
			if res.code != 0 {
				t.Fatalf("curl through the outbound rule: got exit %d, want 0\n%s",
					res.code, res.stderr)
			}
			for _, w := range tt.wantPage {
				if !strings.Contains(res.body, w) {
					t.Errorf("s_server page: no %q\npage:\n%s", w, res.body)
				}
			}
			suite, group := serverChoice(t, server)
			line := d.closeLine(t, res.local)
			want := map[string]string{"cipher": suite, "group": "secp384r1"}
			if tt.suite != "" {
				want["cipher"] = tt.suite
			}
			checkCloseLine(t, line, want)
			if suite != want["cipher"] || group != "secp384r1" {
				t.Errorf("s_server chose suite %q, group %q; want %q, secp384r1",
					suite, group, want["cipher"])
			}
		})
	}
}

// serverChoice returns the suite and key-exchange group of the first
// handshake in the -trace output of openssl s_server. s_server writes
// its trace through stdio, which reaches the pipe in bursts, so it waits
// for both to show.
func serverChoice(t *testing.T, server *proc) (suite, group string) {
	t.Helper()
	deadline := time.Now().Add(logTimeout)
	for {
		trace := server.out.text()
		_, hello, _ := strings.Cut(trace, "ServerHello, Length=")
		// TLS 1.3 names the group in the ServerHello's key share, TLS
		// 1.2 in the ServerKeyExchange that follows.
		s, g := traceSuite.FindStringSubmatch(hello), traceGroup.FindStringSubmatch(hello)
		if s != nil && g != nil {
			return s[1], g[1]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no suite and group in the s_server trace within %s:\n%s", logTimeout, trace)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var (
	traceSuite = regexp.MustCompile(`cipher_suite \{0x[0-9A-F]{2}, 0x[0-9A-F]{2}\} (\S+)`)
	traceGroup = regexp.MustCompile(`(?:named_curve|NamedGroup): (\S+) `)
)

// pythonEndpoint is a TLS server in Python's ssl module, pinned to one
// version. For each connection it reads to the end of the stream, then
// answers in JSON with what it negotiated, the SNI it was sent, what it
// read, and whether the stream ended with close_notify, and closes with
// close_notify of its own.
//
// Arguments: port, certificate, key, version ("1.2" or "1.3").
const pythonEndpoint = `
import json, socket, ssl, sys, threading

port, cert, key, version = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
pinned = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}[version]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.minimum_version = pinned
ctx.maximum_version = pinned
ctx.load_cert_chain(cert, key)

def remember_sni(tls, name, _):
    tls.sni = name

ctx.sni_callback = remember_sni

def serve(raw):
    try:
        with ctx.wrap_socket(raw, server_side=True, suppress_ragged_eofs=False) as tls:
            data, ended = b"", "close_notify"
            while True:
                try:
                    chunk = tls.recv(65536)
                except ssl.SSLEOFError:
                    ended = "TCP FIN without close_notify"
                    break
                if not chunk:
                    break
                data += chunk
            answer = {"version": tls.version(), "cipher": tls.cipher()[0],
                      "sni": getattr(tls, "sni", None), "got": data.decode(),
                      "ended": ended}
            tls.sendall(json.dumps(answer).encode())
            tls.unwrap()
    except (OSError, ssl.SSLError):
        pass  # the readiness probe, or a peer that left

server = socket.create_server(("127.0.0.1", port))
while True:
    raw, _ = server.accept()
    threading.Thread(target=serve, args=(raw,), daemon=True).start()
`

// TestOutboundPythonServer puts a Python ssl server pinned to TLS 1.2,
// then to TLS 1.3, at the endpoint of a rule with server_name set. A Go
// app sends a request in cleartext and half-closes; the server must see
// the request ended by attlsd's close_notify, and its answer, which names
// the version, cipher and SNI it saw, must reach the app and agree with
// attlsd's log.
func TestOutboundPythonServer(t *testing.T) {
	python := needTool(t, "python3", "python3")
	const request = "hello from a cleartext app\n"
	for _, version := range []string{"1.2", "1.3"} {
		t.Run("TLSv"+version, func(t *testing.T) {
			_, endpoint := startListening(t, python, func(port int) []string {
				return []string{"-c", pythonEndpoint, itoa(port),
					filepath.Join(certDir, "server.pem"),
					filepath.Join(certDir, "server-key.pem"), version}
			})
			d := outboundDaemon(t, endpoint, nil, []string{`server_name = "localhost"`})

			reply, app := appRoundTrip(t, d.addr("127.0.0.1", 0), []byte(request))
			line := d.closeLine(t, app)
			checkCloseLine(t, line, map[string]string{"level": "info", "reason": "closed",
				"rule": outRule, "direction": "outbound", "sni": "localhost",
				"tls_version": "TLSv" + version})
			checkAppBytes(t, line, len(request), len(reply))

			type answer struct{ Version, Cipher, SNI, Got, Ended string }
			var got answer
			if err := json.Unmarshal(reply, &got); err != nil {
				t.Fatalf("python endpoint answer %q: %v", reply, err)
			}
			want := answer{"TLSv" + version, got.Cipher, "localhost", request, "close_notify"}
			if version == "1.3" { // Python names TLS 1.3 suites as IANA does
				want.Cipher = line.str("cipher")
			}
			if got != want || got.Cipher == "" {
				t.Errorf("python endpoint saw:\n got %+v\nwant %+v", got, want)
			}
		})
	}
}

// TestOutboundIPv6Endpoint points port-mapped rules at a Go endpoint on
// [::1]. With no server_name the certificate is verified against its IP
// SAN ::1; with one, against that name. The endpoint answers with the
// address it was reached on.
func TestOutboundIPv6Endpoint(t *testing.T) {
	if ln, err := net.Listen("tcp", "[::1]:0"); err != nil {
		missing(t, "IPv6 loopback ::1 unavailable on this host: "+err.Error())
	} else {
		ln.Close()
	}
	ln, err := listenTLSEndpoint(t, "[::1]:0", endpointTLS(t, certDir), func(c *tls.Conn) {
		io.WriteString(c, c.LocalAddr().String())
		c.CloseWrite()
		io.Copy(io.Discard, c)
	})
	if err != nil {
		t.Fatal(err)
	}
	endpoint := ln.Addr().String()
	tests := []struct {
		name      string
		ruleAttrs []string
		sni       string
	}{
		{"ip-san", nil, "::1"},
		{"server-name", []string{`server_name = "localhost"`}, "localhost"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := outboundDaemon(t, endpoint, nil, tt.ruleAttrs)
			id, app, err := askIdentity(d.addr("127.0.0.1", 0))
			if err != nil || id != endpoint {
				t.Fatalf("endpoint identity: got %q, %v; want %q", id, err, endpoint)
			}
			checkCloseLine(t, d.closeLine(t, app), map[string]string{"level": "info",
				"reason": "closed", "endpoint": endpoint, "remote": endpoint, "sni": tt.sni})
		})
	}
}

// TestOutboundPinnedCertificate trusts an endpoint by its certificate
// alone: openssl s_server serves a self-signed certificate, and the
// environment lists that very certificate in trust. Listing another
// self-signed certificate instead fails as an unknown authority.
func TestOutboundPinnedCertificate(t *testing.T) {
	needTool(t, "curl", "curl")
	pinned := serverPKI(t, serverSpec{selfSigned: true})
	other := serverPKI(t, serverSpec{selfSigned: true})
	endpoint := startSServer(t, certArgs(pinned)...)
	tests := []struct {
		name  string
		trust string
		ok    bool
	}{
		{"pinned", filepath.Join(pinned, "server.pem"), true},
		{"other-certificate", filepath.Join(other, "server.pem"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := outboundDaemon(t, endpoint, []string{trustAttr(tt.trust)}, nil)
			if !tt.ok {
				line := d.closeLine(t, appWaits(t, d.addr("127.0.0.1", 0)))
				want := "server certificate of " + endpoint + " is signed by an unknown authority"
				if line.str("level") != "error" || !strings.HasPrefix(line.str("reason"), want) {
					t.Errorf("close line: got %s %q, want error %q...",
						line.str("level"), line.str("reason"), want)
				}
				return
			}
			res := curl(t, "http://"+d.addr("127.0.0.1", 0)+"/")
			if res.code != 0 || !strings.Contains(res.body, "Protocol  : TLSv1.3") {
				t.Fatalf("curl through the outbound rule: got exit %d, page:\n%s\n%s",
					res.code, res.body, res.stderr)
			}
			checkCloseLine(t, d.closeLine(t, res.local), map[string]string{
				"level": "info", "reason": "closed", "remote": endpoint})
		})
	}
}

// checkAppBytes compares a close line's byte counts with the app's.
func checkAppBytes(t *testing.T, line logLine, in, out int) {
	t.Helper()
	if line.num("bytes_in") != float64(in) || line.num("bytes_out") != float64(out) {
		t.Errorf("close line: got bytes_in %v, bytes_out %v; want %d, %d",
			line.num("bytes_in"), line.num("bytes_out"), in, out)
	}
}

// TestOutboundFailures makes the endpoint fail in every way attlsd words
// for an operator. Each time the app, which has sent a request and waits
// for the answer, must see its connection closed promptly with nothing
// read, and attlsd must log an error whose reason names the endpoint and
// says what to change. In TLS 1.3 a server refuses a client certificate
// only after the client's handshake has ended, so those cases run in
// both versions.
func TestOutboundFailures(t *testing.T) {
	other := newPKI(t) // a CA the environment does not trust
	expired := serverPKI(t, serverSpec{expired: true})
	goEndpoint := func(dir string) func(*testing.T) string {
		return func(t *testing.T) string {
			return startTLSEndpoint(t, endpointTLS(t, dir), func(c *tls.Conn) {
				io.Copy(io.Discard, c)
			})
		}
	}
	sserver := func(certs, clientCA string) func(*testing.T) string {
		return func(t *testing.T) string {
			args := certArgs(certs)
			if clientCA != "" {
				args = append(args, "-Verify", "1", "-verify_return_error", "-CAfile", clientCA)
			}
			return startSServer(t, args...)
		}
	}
	const (
		needCert = `{endpoint} requires a client certificate; set certificate and ` +
			`private_key in environment "client"`
		rejected = `{endpoint} rejected the client certificate of environment "client"`
	)

	tests := []struct {
		name                string
		endpoint            func(*testing.T) string
		envAttrs, ruleAttrs []string
		reason              string // {endpoint} stands for the endpoint's address
		slow                bool   // closed at the 1 s handshake timeout, not at once
	}{
		{"connection-refused", closedEndpoint, nil, nil,
			"connect to {endpoint}: dial tcp {endpoint}: connect: connection refused", false},
		{"handshake-timeout", startSilentEndpoint, []string{`handshake_timeout = "1s"`}, nil,
			"handshake with {endpoint}: no handshake within 1s", true},
		{"unknown-authority", goEndpoint(other), nil, nil,
			"server certificate of {endpoint} is signed by an unknown authority; " +
				`add its CA to trust in environment "client"`, false},
		{"name-mismatch", goEndpoint(certDir), nil,
			[]string{`server_name = "elsewhere.attlsd.test"`},
			`server certificate of {endpoint} is not valid for "elsewhere.attlsd.test"; ` +
				"set server_name to a name it holds", false},
		{"expired", sserver(expired, ""),
			[]string{trustAttr(filepath.Join(expired, "ca.pem"))}, nil,
			"server certificate of {endpoint} has expired or is not yet valid " +
				"(check the clocks)", false},
		{"client-cert-required/TLSv1.2", sserver(certDir, caFile()),
			[]string{tlsVersion("1.2")}, nil, needCert, false},
		{"client-cert-required/TLSv1.3", sserver(certDir, caFile()),
			[]string{tlsVersion("1.3")}, nil, needCert, false},
		{"client-cert-rejected/TLSv1.2", sserver(certDir, filepath.Join(other, "ca.pem")),
			append(clientCertAttrs(), tlsVersion("1.2")), nil, rejected, false},
		{"client-cert-rejected/TLSv1.3", sserver(certDir, filepath.Join(other, "ca.pem")),
			append(clientCertAttrs(), tlsVersion("1.3")), nil, rejected, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			endpoint := tt.endpoint(t)
			d := outboundDaemon(t, endpoint, tt.envAttrs, tt.ruleAttrs)

			start := time.Now()
			app := appWaits(t, d.addr("127.0.0.1", 0))
			elapsed := time.Since(start)
			switch {
			case tt.slow && (elapsed < 900*time.Millisecond || elapsed > 3*time.Second):
				t.Errorf("app connection closed after %s, want about 1s (handshake_timeout)",
					elapsed)
			case !tt.slow && elapsed > 3*time.Second:
				t.Errorf("app connection closed after %s, want at once", elapsed)
			}

			line := d.closeLine(t, app)
			checkCloseLine(t, line, map[string]string{"level": "error", "rule": outRule,
				"direction": "outbound", "endpoint": endpoint})
			want := strings.ReplaceAll(tt.reason, "{endpoint}", endpoint)
			if !strings.Contains(line.str("reason"), want) {
				t.Errorf("close line reason:\n got %q\nwant it to hold %q", line.str("reason"), want)
			}
		})
	}
}

// appWaits connects to addr as an app that sends a request and waits for
// an answer, and returns once attlsd has closed the connection. Reading
// anything fails the test. It returns the app's address.
func appWaits(t *testing.T, addr string) string {
	t.Helper()
	c := dialTCP(t, addr)
	if _, err := c.Write([]byte("GET / HTTP/1.0\r\n\r\n")); err != nil {
		t.Fatalf("app write: %v", err)
	}
	n, err := io.Copy(io.Discard, c)
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		t.Fatalf("app connection still open after %s", ioTimeout)
	case err != nil && !errIsClosed(err):
		t.Errorf("app read: got %v, want EOF or a reset", err)
	case n != 0:
		t.Errorf("app read %d bytes from a failed endpoint, want none", n)
	}
	return c.LocalAddr().String()
}

// TestOutboundTLSInsideTLS has the app speak TLS itself into the outbound
// port: Go's crypto/tls and openssl s_client in one write, and Python's
// ClientHello sent as its first bytes, a pause longer than attlsd waits
// for a first byte, then the rest. attlsd must refuse the ClientHello
// instead of wrapping it in its own TLS: the app's handshake fails,
// nothing of it reaches the endpoint, and the log says what is wrong and
// what to do. An app that speaks at once is judged before attlsd dials,
// so the endpoint being down does not hide the app's mistake and attlsd
// never shakes hands with it; an app that speaks only after attlsd has
// dialled is judged before any of its bytes are handed on.
func TestOutboundTLSInsideTLS(t *testing.T) {
	goApp := func(t *testing.T, addr string, _ <-chan struct{}) {
		c := tls.Client(dialTCP(t, addr), clientTLS(t))
		if err := c.Handshake(); err == nil {
			t.Errorf("app's own TLS handshake through an outbound rule: got success, want failure")
		}
	}
	tests := []struct {
		name string
		down bool // the endpoint refuses connections
		app  func(t *testing.T, addr string, handshook <-chan struct{})
		late bool // the app speaks once attlsd has shaken hands with the endpoint
	}{
		{name: "go-crypto-tls", app: goApp},
		{name: "openssl-s_client", app: func(t *testing.T, addr string, _ <-chan struct{}) {
			openssl := needTool(t, "openssl", "openssl")
			_, stderr, code := run(t, "", openssl, "s_client", "-connect", addr,
				"-servername", "localhost", "-CAfile", caFile())
			if code == 0 {
				t.Errorf("s_client through an outbound rule: got exit 0, want failure\n%s", stderr)
			}
		}},
		{name: "python-split-1+rest", app: splitHelloApp(1)},
		{name: "python-split-4+rest", app: splitHelloApp(4)},
		{name: "endpoint-down/go-crypto-tls", down: true, app: goApp},
		{name: "endpoint-down/python-split-1+rest", down: true, app: splitHelloApp(1)},
		{name: "after-endpoint-handshake/split-1+rest", late: true, app: lateHelloApp},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := make(chan digest, 1)
			handshook := make(chan struct{})
			endpoint := closedEndpoint(t)
			if !tt.down {
				endpoint = startTLSEndpoint(t, endpointTLS(t, certDir), func(c *tls.Conn) {
					close(handshook) // one connection at most
					offer(got, newDigest(hashAll(c)))
				})
			}
			d := outboundDaemon(t, endpoint, nil, nil)

			tt.app(t, d.addr("127.0.0.1", 0), handshook)
			line, err := d.log.wait(logTimeout, d.exited, isMessage("connection closed"))
			if err != nil {
				t.Fatalf("close line: %v\nattlsd log:\n%s", err, d.log.text())
			}
			// attlsd logs the endpoint's address and TLS version once it
			// has shaken hands with it.
			want := map[string]string{"level": "warn", "rule": outRule,
				"direction": "outbound", "remote": "", "tls_version": ""}
			if tt.late {
				want["remote"], want["tls_version"] = endpoint, "TLSv1.3"
			}
			checkCloseLine(t, line, want)
			checkTLSInsideTLS(t, line)
			if tt.late {
				if g := receive(t, got, "endpoint end of stream"); g.n != 0 {
					t.Errorf("endpoint read %d bytes of the app's ClientHello, want none", g.n)
				}
			}
		})
	}
}

// checkTLSInsideTLS checks that a close line refuses the app's own TLS
// and that nothing of it was forwarded.
func checkTLSInsideTLS(t *testing.T, line logLine) {
	t.Helper()
	const want = "the app sent a TLS ClientHello into an outbound rule (TLS inside TLS): " +
		"make the app speak cleartext to this port"
	if !strings.HasPrefix(line.str("reason"), want) {
		t.Errorf("close line reason:\n got %q\nwant %q...", line.str("reason"), want)
	}
	if line.num("bytes_in") != 0 {
		t.Errorf("close line bytes_in: got %v, want 0", line.num("bytes_in"))
	}
}

// pythonSplitHello makes a ClientHello with Python's ssl module and sends
// it on a raw socket in two writes: its first bytes, a pause, the rest.
// It exits 0 when the server closes without answering.
//
// Arguments: port, CA file, bytes in the first write, pause in seconds.
const pythonSplitHello = `
import socket, ssl, sys, time

port, cafile, first, pause = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
ctx = ssl.create_default_context(cafile=cafile)
incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
tls = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
try:
    tls.do_handshake()
except ssl.SSLWantReadError:
    pass
hello = outgoing.read()
s = socket.create_connection(("127.0.0.1", port), timeout=20)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
s.sendall(hello[:first])
time.sleep(pause)
s.sendall(hello[first:])
try:
    answer = s.recv(65536)
except ConnectionResetError:
    answer = b""
print("sent %d bytes in writes of %d and %d, got %d back" %
      (len(hello), first, len(hello) - first, len(answer)))
sys.exit(1 if answer else 0)
`

// splitHelloApp is an app that sends Python's ClientHello with its first
// write of first bytes, then a pause longer than attlsd's wait for a
// first byte (200 ms).
func splitHelloApp(first int) func(*testing.T, string, <-chan struct{}) {
	return func(t *testing.T, addr string, _ <-chan struct{}) {
		python := needTool(t, "python3", "python3")
		_, port, _ := net.SplitHostPort(addr)
		stdout, stderr, code := run(t, "", python, "-c", pythonSplitHello, port, caFile(),
			itoa(first), "0.5")
		if code != 0 {
			t.Errorf("split ClientHello: got exit %d, want 0 (closed unanswered)\n%s%s",
				code, stdout, stderr)
		}
	}
}

// lateHelloApp connects and says nothing until attlsd has shaken hands
// with the endpoint, then sends a ClientHello in two writes.
func lateHelloApp(t *testing.T, addr string, handshook <-chan struct{}) {
	hello := clientHello(t)
	c := dialTCP(t, addr)
	receive(t, handshook, "attlsd's handshake with the endpoint")
	if _, err := c.Write(hello[:1]); err != nil {
		t.Fatalf("app write: %v", err)
	}
	time.Sleep(500 * time.Millisecond)
	if _, err := c.Write(hello[1:]); err != nil && !errIsClosed(err) {
		t.Fatalf("app write: %v", err)
	}
	if n, _ := io.Copy(io.Discard, c); n != 0 {
		t.Errorf("app read %d bytes after its ClientHello, want none", n)
	}
}

// clientHello returns the first record Go's crypto/tls sends: a
// ClientHello.
func clientHello(t *testing.T) []byte {
	t.Helper()
	app, peer := net.Pipe()
	defer peer.Close()
	cfg := clientTLS(t)
	go func() {
		tls.Client(app, cfg).Handshake()
		app.Close()
	}()
	hello := make([]byte, 5)
	if _, err := io.ReadFull(peer, hello); err != nil {
		t.Fatalf("read ClientHello header: %v", err)
	}
	hello = append(hello, make([]byte, int(hello[3])<<8|int(hello[4]))...)
	if _, err := io.ReadFull(peer, hello[5:]); err != nil {
		t.Fatalf("read ClientHello: %v", err)
	}
	return hello
}

// TestOutboundLargeTransfer sends 64 MiB each way at the same time
// through an outbound rule, cleartext app to TLS endpoint and back, and
// compares SHA-256 digests at both ends.
func TestOutboundLargeTransfer(t *testing.T) {
	const size = 64 << 20
	type result struct{ sent, got digest }
	endpointDone := make(chan result, 1)
	endpoint := startTLSEndpoint(t, endpointTLS(t, certDir), func(c *tls.Conn) {
		sent := make(chan digest, 1)
		go func() {
			sum, err := writePattern(c, size, 51)
			if err == nil {
				err = c.CloseWrite()
			}
			sent <- digest{n: size, sum: sum, err: err}
		}()
		got := newDigest(hashAll(c))
		offer(endpointDone, result{<-sent, got})
	})
	d := outboundDaemon(t, endpoint, nil, nil)

	app := dialTCP(t, d.addr("127.0.0.1", 0))
	sent := make(chan digest, 1)
	go func() {
		sum, err := writePattern(app, size, 15)
		if err == nil {
			err = app.CloseWrite()
		}
		sent <- digest{n: size, sum: sum, err: err}
	}()
	appGot := newDigest(hashAll(app))
	appSent := receive(t, sent, "app write")
	ep := receive(t, endpointDone, "endpoint result")

	if !ep.got.equal(appSent) {
		t.Errorf("app to endpoint: endpoint got %v, app sent %v", ep.got, appSent)
	}
	if !appGot.equal(ep.sent) {
		t.Errorf("endpoint to app: app got %v, endpoint sent %v", appGot, ep.sent)
	}
	checkClean(t, d, app.LocalAddr().String(), size, size)
}

// TestOutboundHalfClose checks that an end of stream crosses an outbound
// rule in each direction while the other direction keeps flowing, in TLS
// 1.3 and 1.2: the app half-closes first (TCP FIN) and still gets an
// answer the endpoint sends only after it saw EOF; or the endpoint ends
// its side first (close_notify, or a bare FIN) and still receives what
// the app sends after it read EOF.
func TestOutboundHalfClose(t *testing.T) {
	for _, version := range []string{"1.3", "1.2"} {
		t.Run("app-first/TLSv"+version, func(t *testing.T) {
			testAppFirst(t, version)
		})
		for _, hc := range halfCloses {
			t.Run("endpoint-first/"+hc.name+"/TLSv"+version, func(t *testing.T) {
				testEndpointFirst(t, version, hc.end)
			})
		}
	}
}

// testAppFirst: the app sends, half-closes, then reads an answer the
// endpoint writes only after it saw EOF.
func testAppFirst(t *testing.T, version string) {
	request, response := pattern(3000, 52), pattern(200_000, 53)
	got := make(chan digest, 1)
	endpoint := startTLSEndpoint(t, endpointTLS(t, certDir), func(c *tls.Conn) {
		offer(got, newDigest(hashAll(c)))
		c.Write(response)
		c.CloseWrite()
	})
	d := outboundDaemon(t, endpoint, []string{tlsVersion(version)}, nil)

	app := dialTCP(t, d.addr("127.0.0.1", 0))
	if _, err := app.Write(request); err != nil {
		t.Fatal(err)
	}
	if err := app.CloseWrite(); err != nil {
		t.Fatalf("app half-close: %v", err)
	}
	if g, want := receive(t, got, "endpoint EOF"), digestOf(request); !g.equal(want) {
		t.Errorf("endpoint read: got %v, want %v then EOF", g, want)
	}
	if g, want := newDigest(hashAll(app)), digestOf(response); !g.equal(want) {
		t.Errorf("app read after its half-close: got %v, want %v", g, want)
	}
	line := d.closeLine(t, app.LocalAddr().String())
	checkCloseLine(t, line, map[string]string{"level": "info", "reason": "closed",
		"tls_version": "TLSv" + version})
	checkAppBytes(t, line, len(request), len(response))
}

// testEndpointFirst: the endpoint sends and ends its side; the app reads
// to EOF, then sends, and the endpoint still receives it all.
func testEndpointFirst(t *testing.T, version string, end func(*tls.Conn) error) {
	greeting, late := pattern(100_000, 54), pattern(5000, 55)
	got := make(chan digest, 1)
	endpoint := startTLSEndpoint(t, endpointTLS(t, certDir), func(c *tls.Conn) {
		c.Write(greeting)
		if err := end(c); err != nil {
			offer(got, digest{err: fmt.Errorf("endpoint half-close: %w", err)})
			return
		}
		offer(got, newDigest(hashAll(c)))
	})
	d := outboundDaemon(t, endpoint, []string{tlsVersion(version)}, nil)

	app := dialTCP(t, d.addr("127.0.0.1", 0))
	if g, want := newDigest(hashAll(app)), digestOf(greeting); !g.equal(want) {
		t.Fatalf("app read: got %v, want %v then EOF", g, want)
	}
	if _, err := app.Write(late); err != nil {
		t.Fatalf("app write after EOF from the endpoint: %v", err)
	}
	if err := app.CloseWrite(); err != nil {
		t.Fatalf("app half-close: %v", err)
	}
	if g, want := receive(t, got, "endpoint EOF"), digestOf(late); !g.equal(want) {
		t.Errorf("endpoint read after its half-close: got %v, want %v", g, want)
	}
	line := d.closeLine(t, app.LocalAddr().String())
	checkCloseLine(t, line, map[string]string{"level": "info", "reason": "closed",
		"tls_version": "TLSv" + version})
	checkAppBytes(t, line, len(late), len(greeting))
}

// TestOutboundDNSChange checks that a rule whose endpoint is a host name
// resolves it for every connection, and tries each address in turn. The
// daemon runs with a private /etc/hosts that the test rewrites; two Go
// endpoints on 127.0.0.2 and 127.0.0.3, on one port, answer with their
// own address.
func TestOutboundDNSChange(t *testing.T) {
	unshare := needHostsNamespace(t)
	const (
		flip = "dnsflip.attlsd.test" // moves from 127.0.0.2 to 127.0.0.3
		both = "dnsboth.attlsd.test" // 127.0.0.4, where nothing listens, then 127.0.0.2
		dead = "dnsdead.attlsd.test" // 127.0.0.4 only
	)
	pki := newPKI(t, flip, both, dead)
	port := identityEndpoints(t, endpointTLS(t, pki), "127.0.0.2", "127.0.0.3")
	at := func(host string) string { return net.JoinHostPort(host, itoa(port)) }
	if c, err := net.DialTimeout("tcp", at("127.0.0.4"), time.Second); err == nil {
		c.Close()
		t.Fatalf("something listens on %s, which must refuse", at("127.0.0.4"))
	}

	hostsText := func(flipAddr string) string {
		// The resolver keeps this order for IPv4 loopback addresses
		// (RFC 6724 rule 10), so 127.0.0.4 is tried first for both.
		return "127.0.0.1 localhost\n" + flipAddr + " " + flip + "\n" +
			"127.0.0.4 " + both + "\n127.0.0.2 " + both + "\n127.0.0.4 " + dead + "\n"
	}
	hosts := filepath.Join(t.TempDir(), "hosts")
	writeFile(t, hosts, hostsText("127.0.0.2"))
	d := startDaemonWithHosts(t, unshare, hosts, 3, func(p []int) string {
		return block("environment", outEnv, trustAttr(filepath.Join(pki, "ca.pem"))) +
			portMappedRule("flip", p[0], at(flip)) +
			portMappedRule("both", p[1], at(both)) +
			portMappedRule("dead", p[2], at(dead))
	})

	t.Run("only-address-refuses", func(t *testing.T) {
		app := appWaits(t, d.addr("127.0.0.1", 2))
		line := d.closeLine(t, app)
		checkCloseLine(t, line, map[string]string{"level": "error", "rule": "dead"})
		want := "connect to " + at(dead) + ": dial tcp " + at("127.0.0.4") + ": "
		if r := line.str("reason"); !strings.HasPrefix(r, want) ||
			!strings.HasSuffix(r, "connection refused") {
			t.Errorf("close line reason:\n got %q\nwant %q...connection refused", r, want)
		}
	})
	t.Run("first-address-refuses", func(t *testing.T) {
		checkIdentity(t, d, 1, "both", both, "127.0.0.2", port)
	})
	t.Run("address-changes", func(t *testing.T) {
		checkIdentity(t, d, 0, "flip", flip, "127.0.0.2", port)

		writeFile(t, hosts, hostsText("127.0.0.3")) // in place: same inode
		changed := time.Now()
		// Go's resolver reads /etc/hosts again at most every 5 s.
		deadline := changed.Add(20 * time.Second)
		for {
			id, _, err := askIdentity(d.addr("127.0.0.1", 0))
			if err == nil && id == "127.0.0.3" {
				break
			}
			if err == nil && id != "127.0.0.2" {
				t.Fatalf("endpoint identity: got %q, want 127.0.0.2 or 127.0.0.3", id)
			}
			if time.Now().After(deadline) {
				t.Fatalf("connections still reach %q (%v) %s after the hosts file changed",
					id, err, time.Since(changed).Round(time.Millisecond))
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Logf("new address reached %s after the change",
			time.Since(changed).Round(time.Millisecond))
		checkIdentity(t, d, 0, "flip", flip, "127.0.0.3", port)
	})
}

// identityEndpoints runs a Go TLS endpoint on each of hosts, all on one
// port, each answering with its own host and closing, and returns the
// port.
func identityEndpoints(t *testing.T, cfg *tls.Config, hosts ...string) int {
	t.Helper()
	for try := 1; ; try++ {
		port, err := tryIdentityEndpoints(t, cfg, hosts)
		if err == nil {
			return port
		}
		if try == bindRetries {
			t.Fatalf("identity endpoints on one port: %v", err)
		}
	}
}

func tryIdentityEndpoints(t *testing.T, cfg *tls.Config, hosts []string) (int, error) {
	port := 0
	for _, h := range hosts {
		ln, err := listenTLSEndpoint(t, net.JoinHostPort(h, itoa(port)), cfg,
			func(c *tls.Conn) {
				io.WriteString(c, h)
				c.CloseWrite()
				io.Copy(io.Discard, c)
			})
		if err != nil {
			return 0, err
		}
		port = ln.Addr().(*net.TCPAddr).Port
	}
	return port, nil
}

// askIdentity connects to an outbound port as an app, half-closes and
// returns what the endpoint answered, and the app's address.
func askIdentity(addr string) (id, app string, err error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return "", "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(ioTimeout))
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		return "", "", err
	}
	b, err := io.ReadAll(c)
	return string(b), c.LocalAddr().String(), err
}

// checkIdentity asks the endpoint of listener i who it is, wants ip, and
// checks the close line: rule, the host name as endpoint and SNI, and ip
// as the address attlsd reached.
func checkIdentity(t *testing.T, d *daemon, i int, rule, name, ip string, port int) {
	t.Helper()
	id, app, err := askIdentity(d.addr("127.0.0.1", i))
	if err != nil || id != ip {
		t.Fatalf("endpoint identity through rule %q: got %q, %v; want %q", rule, id, err, ip)
	}
	checkCloseLine(t, d.closeLine(t, app), map[string]string{"level": "info",
		"reason": "closed", "rule": rule, "sni": name,
		"endpoint": net.JoinHostPort(name, itoa(port)),
		"remote":   net.JoinHostPort(ip, itoa(port))})
}

// srvDrop is the server's netfilter for TestOutboundUnanswered: SYNs to
// port 9443, and to port 8443 of the address not in the certificate,
// are dropped without a word, as a firewall does. Each rule counts what
// it dropped.
const srvDrop = `table inet attlsd_e2e {
  chain input {
    type filter hook input priority 0; policy accept;
    tcp dport 9443 counter drop
    ip daddr ` + srvBadAddr4 + ` tcp dport 8443 counter drop
  }
}
`

// TestOutboundUnanswered runs attlsd beside the app in the namespace lab,
// with a private /etc/hosts, towards a server whose firewall drops some
// SYNs. An endpoint that never answers fails at connect_timeout with a
// log line that says so; a host name whose first address is dropped and
// whose second works is reached at the second within the connect timeout.
// The drop counters show that attlsd did try the dropped address.
func TestOutboundUnanswered(t *testing.T) {
	unshare := needHostsNamespace(t)
	lab := newNetnsLab(t)
	lab.nftables(t, lab.srv, srvDrop)
	hosts := filepath.Join(t.TempDir(), "hosts")
	// Go keeps this order for IPv4 addresses (RFC 6724 rule 9 is for
	// IPv6 only), so the dropped address is tried first.
	writeFile(t, hosts, "127.0.0.1 localhost\n"+
		srvBadAddr4+" "+labHostName+"\n"+srvAddr4+" "+labHostName+"\n")
	const silentPort, secondPort = "15003", "15004"
	d := lab.startAttlsd(t, lab.app, lab.transparentEnv()+
		block("outbound", "silent", "port = "+silentPort, `environment = "lab"`,
			"endpoint = "+quote(net.JoinHostPort(srvAddr4, "9443")), `connect_timeout = "1s"`)+
		block("outbound", "second", "port = "+secondPort, `environment = "lab"`,
			"endpoint = "+quote(net.JoinHostPort(labHostName, "8443")),
			`connect_timeout = "6s"`),
		withHosts(unshare, hosts)...)

	t.Run("no-answer", func(t *testing.T) {
		before := lab.dropped(t, "9443")
		c := lab.dial(t, lab.app, "127.0.0.1:"+silentPort, []byte("hello"))
		line := d.closeLine(t, c.local)
		checkLabRefused(t, line, c, "error",
			"connect to "+net.JoinHostPort(srvAddr4, "9443")+": no answer within 1s")
		if n := lab.dropped(t, "9443") - before; n == 0 {
			t.Errorf("SYNs dropped on the way to port 9443: got %d, want some", n)
		}
	})
	t.Run("first-address-dropped", func(t *testing.T) {
		before := lab.dropped(t, srvBadAddr4)
		echoes := lab.echoCount()
		payload := pattern(64<<10, 77)
		c := lab.dial(t, lab.app, "127.0.0.1:"+secondPort, payload)
		if c.err != "" || !bytes.Equal(c.got, payload) {
			t.Fatalf("echo through attlsd: got %d bytes (error %q), want the %d sent",
				len(c.got), c.err, len(payload))
		}
		dst := net.JoinHostPort(srvAddr4, "8443")
		checkCloseLine(t, d.closeLine(t, c.local), map[string]string{"level": "info",
			"reason": "closed", "rule": "second", "sni": labHostName,
			"endpoint": net.JoinHostPort(labHostName, "8443"), "remote": dst})
		checkLabEchoed(t, lab.echoed(t, dst, echoes), appAddr4, len(payload))
		if n := lab.dropped(t, srvBadAddr4) - before; n == 0 {
			t.Errorf("SYNs dropped on the way to %s: got %d, want some: "+
				"the first address was not tried", srvBadAddr4, n)
		}
	})
}

// TestOutboundFailureEndsInOrder has curl send a request to an outbound
// rule whose endpoint fails: refused, silent past connect_timeout,
// signed by a CA the environment does not trust, or curl speaking TLS
// itself into the rule. attlsd must end curl's connection in order, as
// it does inbound when a backend fails: curl sees an empty reply (exit
// 52; exit 35 for its own handshake cut short), never "connection reset
// by peer", and the close line says why as before.
func TestOutboundFailureEndsInOrder(t *testing.T) {
	other := newPKI(t) // a CA the environment does not trust
	tests := []struct {
		name      string
		endpoint  func(*testing.T) string
		ruleAttrs []string
		https     bool // curl speaks TLS to the rule
		code      int
		level     string
		reason    string // {endpoint} stands for the endpoint's address
	}{
		{"connection-refused", closedEndpoint, nil, false, 52, "error",
			"connect to {endpoint}: dial tcp {endpoint}: connect: connection refused"},
		{"connect-timeout", unansweringBackend, []string{`connect_timeout = "1s"`}, false, 52,
			"error", "connect to {endpoint}: no answer within 1s"},
		{"unknown-authority", func(t *testing.T) string {
			return startTLSEndpoint(t, endpointTLS(t, other), func(c *tls.Conn) {
				io.Copy(io.Discard, c)
			})
		}, nil, false, 52, "error", "server certificate of {endpoint} is signed by an " +
			`unknown authority; add its CA to trust in environment "client"`},
		{"tls-inside-tls", closedEndpoint, nil, true, 35, "warn",
			"the app sent a TLS ClientHello into an outbound rule (TLS inside TLS)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			endpoint := tt.endpoint(t)
			d := outboundDaemon(t, endpoint, nil, tt.ruleAttrs)
			addr := d.addr("127.0.0.1", 0)
			url, args := "http://"+addr+"/", []string{"--http1.1"}
			if tt.https {
				url, args = httpsURL(addr)
			}
			res := curl(t, url, args...)
			if res.code != tt.code || strings.Contains(strings.ToLower(res.stderr), "reset") {
				t.Errorf("curl: got exit %d, stderr %q; want %d and no reset",
					res.code, res.stderr, tt.code)
			}
			line := d.closeLine(t, res.local)
			checkCloseLine(t, line, map[string]string{"level": tt.level, "rule": outRule,
				"direction": "outbound", "endpoint": endpoint})
			want := strings.ReplaceAll(tt.reason, "{endpoint}", endpoint)
			if !strings.HasPrefix(line.str("reason"), want) {
				t.Errorf("close line reason:\n got %q\nwant %q...", line.str("reason"), want)
			}
		})
	}
}
