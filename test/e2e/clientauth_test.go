package e2e

import (
	"bufio"
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	proxyproto "github.com/pires/go-proxyproto"
)

// Sub-TLVs of PP2_TYPE_SSL that carry client certificate data. attlsd must
// never write them on inbound.
const (
	subtypeSSLCN         proxyproto.PP2Type = 0x22
	subtypeSSLClientCert proxyproto.PP2Type = 0x28
)

// clientCert is a certificate curl presents, or none when file is "".
type clientCert struct {
	name      string
	file, key string
}

// args are curl's arguments to present c.
func (c clientCert) args() []string {
	if c.file == "" {
		return nil
	}
	return []string{"--cert", c.file, "--key", c.key}
}

// TestClientAuth runs curl against each client_auth mode without a
// certificate, with the development client certificate, with a client
// certificate of a foreign CA (a second attlsd certs init), and with the
// server certificate, which lacks the client-authentication usage.
//
// Where the handshake passes, the backend learns whether a certificate
// was verified and nothing about whose it was: the whole stream it
// receives, PROXY header and all, holds neither the certificate's DER, its
// public key, its common name nor its serial number, and the header has no
// CN or certificate TLV. Where a certificate is required and none is sent,
// the connection is refused with AT-TLS code 5001; where one cannot be
// verified (full, required), it is refused with the reason. A refused
// connection is logged at warn and never reaches the backend.
func TestClientAuth(t *testing.T) {
	needTool(t, "curl", "curl")
	foreign := newPKI(t)
	var (
		noCert     = clientCert{name: "without-cert"}
		devCert    = clientCert{"dev-cert", filepath.Join(certDir, "client.pem"), filepath.Join(certDir, "client-key.pem")}
		foreignCA  = clientCert{"foreign-CA", filepath.Join(foreign, "client.pem"), filepath.Join(foreign, "client-key.pem")}
		serverCert = clientCert{"server-cert", filepath.Join(certDir, "server.pem"), filepath.Join(certDir, "server-key.pem")}
	)
	const (
		unknownCA   = "client certificate not verified: x509: certificate signed by unknown authority"
		wrongUsage  = "client certificate not verified: x509: certificate specifies an incompatible key usage"
		missingCert = "client certificate required, none sent"
	)

	streams := make(chan backendStream, 16)
	b := startBackend(t, captureStream(streams))
	modes := []string{"none", "passthru", "full", "required"}
	d := startDaemon(t, "127.0.0.1", len(modes), func(p []int) string {
		pol := environment()
		for i, m := range modes {
			pol += inbound(m, p[i], b.addr, "client_auth = "+quote(m))
		}
		return pol
	})

	tests := []struct {
		mode         string
		cert         clientCert
		wantVerified bool
		wantRefused  string  // the close line's reason prefix; "" when served
		wantCode     float64 // the AT-TLS code of a refusal; 0 for none
	}{
		{"none", devCert, false, "", 0},
		{"passthru", devCert, false, "", 0},
		{"passthru", foreignCA, false, "", 0},
		{"full", devCert, true, "", 0},
		{"full", noCert, false, "", 0},
		{"full", foreignCA, false, unknownCA, 0},
		{"full", serverCert, false, wrongUsage, 0},
		{"required", devCert, true, "", 0},
		{"required", noCert, false, missingCert, 5001},
		{"required", foreignCA, false, unknownCA, 0},
		{"required", serverCert, false, wrongUsage, 0},
	}
	for _, tt := range tests {
		t.Run(tt.mode+"/"+tt.cert.name, func(t *testing.T) {
			url, args := httpsURL(d.addr("127.0.0.1", indexOf(modes, tt.mode)))
			before := b.accepted.Load()
			res := curl(t, url, append(args, tt.cert.args()...)...)

			if tt.wantRefused != "" {
				checkRefused(t, d, res, tt.wantRefused, tt.wantCode)
				if n := b.accepted.Load() - before; n != 0 {
					t.Errorf("backend connections: got %d, want 0", n)
				}
				return
			}
			if res.code != 0 || res.body != "ok\n" {
				t.Fatalf("curl: got exit %d, body %q; want 0, %q\n%s", res.code, res.body, "ok\n", res.stderr)
			}
			s := receive(t, streams, "backend stream")
			if tt.cert.file != "" {
				checkNoClientIdentity(t, s.all, loadCert(t, tt.cert.file))
			}
			checkSSLTLV(t, s.bc, tt.wantVerified)
		})
	}
}

// checkRefused checks that curl failed and that attlsd logged the refusal
// at warn with reason and code (0: no code).
func checkRefused(t *testing.T, d *daemon, res curlResult, reason string, code float64) {
	t.Helper()
	if res.code == 0 {
		t.Errorf("curl: got success, want the handshake refused")
	}
	line := d.closeLine(t, res.local)
	wantCode := code
	if code == 0 {
		wantCode = -1 // absent
	}
	if line.str("level") != "warn" || line.num("code") != wantCode ||
		!strings.HasPrefix(line.str("reason"), reason) {
		t.Errorf("close line: got level %q, code %v, reason %q; want warn, %v, %q...",
			line.str("level"), line.num("code"), line.str("reason"), code, reason)
	}
}

// checkSSLTLV checks that the SSL TLV says TLS, and a verified client
// certificate exactly when verified, with no CN or certificate sub-TLV.
func checkSSLTLV(t *testing.T, bc *backendConn, verified bool) {
	t.Helper()
	ssl, ok := bc.ssl()
	if !ok {
		t.Fatalf("no valid SSL TLV in header %x", bc.Raw)
	}
	got := ssl.Verified() && ssl.ClientCertConn() && ssl.ClientCertSess()
	if got != verified || !ssl.ClientSSL() {
		t.Errorf("SSL TLV: got client 0x%02x verify %d (verified %v); want verified %v",
			ssl.Client, ssl.Verify, got, verified)
	}
	if !verified && (ssl.Verified() || ssl.Client != 0x01) {
		t.Errorf("SSL TLV without a verified certificate: got client 0x%02x verify %d; want 0x01, non-zero",
			ssl.Client, ssl.Verify)
	}
	for _, sub := range ssl.TLV {
		if sub.Type == subtypeSSLCN || sub.Type == subtypeSSLClientCert {
			t.Errorf("SSL sub-TLV 0x%02x present: %q", byte(sub.Type), sub.Value)
		}
	}
	tlvs, err := bc.Header.TLVs()
	if err != nil {
		t.Fatal(err)
	}
	for _, tlv := range tlvs {
		if tlv.Type == subtypeSSLCN || tlv.Type == subtypeSSLClientCert {
			t.Errorf("TLV 0x%02x present at top level", byte(tlv.Type))
		}
	}
}

// backendStream is everything one backend connection received: the PROXY
// header and every byte after it, up to the end of stream.
type backendStream struct {
	bc  *backendConn
	all []byte
}

// captureStream answers one HTTP request with "ok\n" and, once the
// client's side has ended, passes the whole stream it received on to ch.
func captureStream(ch chan<- backendStream) func(*backendConn) {
	return func(bc *backendConn) {
		var rest bytes.Buffer
		r := bufio.NewReader(io.TeeReader(bc, &rest))
		req, err := http.ReadRequest(r)
		if err != nil {
			return // a client that gave up; the test sees it on its side
		}
		req.Body.Close()
		fmt.Fprint(bc, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n")
		bc.CloseWrite()
		io.Copy(io.Discard, r)
		offer(ch, backendStream{bc, append(bytes.Clone(bc.Raw), rest.Bytes()...)})
	}
}

// checkNoClientIdentity fails when stream holds anything taken from the
// client certificate.
func checkNoClientIdentity(t *testing.T, stream []byte, cert *x509.Certificate) {
	t.Helper()
	serial := cert.SerialNumber
	leaks := []struct {
		what string
		b    []byte
	}{
		{"the client certificate (DER)", cert.Raw},
		{"its public key", cert.RawSubjectPublicKeyInfo},
		{"its subject (DER)", cert.RawSubject},
		{"its common name", []byte(cert.Subject.CommonName)},
		{"its serial number", serial.Bytes()},
		{"its serial number in decimal", []byte(serial.String())},
		{"its serial number in hex", []byte(serial.Text(16))},
		{"its serial number in upper-case hex", []byte(strings.ToUpper(serial.Text(16)))},
	}
	for _, l := range leaks {
		if bytes.Contains(stream, l.b) {
			t.Errorf("the backend's stream holds %s", l.what)
		}
	}
}

// loadCert reads the first certificate of a PEM file.
func loadCert(t *testing.T, file string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM block", file)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func indexOf(list []string, s string) int {
	for i, v := range list {
		if v == s {
			return i
		}
	}
	return -1
}
