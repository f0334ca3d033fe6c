package e2e

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"

	proxyproto "github.com/pires/go-proxyproto"
)

// Sub-TLVs of PP2_TYPE_SSL that carry client certificate data. attlsd must
// never write them on inbound.
const (
	subtypeSSLCN         proxyproto.PP2Type = 0x22
	subtypeSSLClientCert proxyproto.PP2Type = 0x28
)

// TestClientAuth runs curl with and without the development client
// certificate against each client_auth mode. Where the handshake passes,
// the backend learns whether a certificate was verified and nothing about
// whose it was: the raw PROXY header holds neither the certificate's DER,
// its common name nor its serial number, and no CN or certificate TLV.
// Where a certificate is required and none is sent, the connection is
// refused with AT-TLS code 5001 and never reaches the backend.
func TestClientAuth(t *testing.T) {
	needTool(t, "curl", "curl")
	cert := loadCert(t, filepath.Join(certDir, "client.pem"))
	withCert := []string{"--cert", filepath.Join(certDir, "client.pem"),
		"--key", filepath.Join(certDir, "client-key.pem")}

	handle, headers := record(answerHTTP("ok\n"))
	b := startBackend(t, handle)
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
		cert         bool
		wantVerified bool
		wantCode     float64 // refused with this AT-TLS code; 0 when served
	}{
		{"none", true, false, 0},
		{"passthru", true, false, 0},
		{"full", true, true, 0},
		{"full", false, false, 0},
		{"required", true, true, 0},
		{"required", false, false, 5001},
	}
	for _, tt := range tests {
		name := tt.mode + "/without-cert"
		if tt.cert {
			name = tt.mode + "/with-cert"
		}
		t.Run(name, func(t *testing.T) {
			port := indexOf(modes, tt.mode)
			url, args := httpsURL(d.addr("127.0.0.1", port))
			if tt.cert {
				args = append(args, withCert...)
			}
			before := b.accepted.Load()
			res := curl(t, url, args...)

			if tt.wantCode != 0 {
				if res.code == 0 {
					t.Fatalf("curl: got success, want the handshake refused")
				}
				line := d.closeLine(t, res.local)
				if line.num("code") != tt.wantCode || line.str("level") != "warn" ||
					line.str("reason") != "client certificate required, none sent" {
					t.Errorf("close line: got level %q, code %v, reason %q; want warn, %v, %q",
						line.str("level"), line.num("code"), line.str("reason"), tt.wantCode,
						"client certificate required, none sent")
				}
				if n := b.accepted.Load() - before; n != 0 {
					t.Errorf("backend connections: got %d, want 0", n)
				}
				return
			}

			if res.code != 0 || res.body != "ok\n" {
				t.Fatalf("curl: got exit %d, body %q; want 0, %q\n%s", res.code, res.body, "ok\n", res.stderr)
			}
			bc := receive(t, headers, "backend connection")
			checkNoClientIdentity(t, bc.Raw, cert)
			ssl, ok := bc.ssl()
			if !ok {
				t.Fatalf("no valid SSL TLV in header %x", bc.Raw)
			}
			verified := ssl.Verified() && ssl.ClientCertConn() && ssl.ClientCertSess()
			if verified != tt.wantVerified || !ssl.ClientSSL() {
				t.Errorf("SSL TLV: got client 0x%02x verify %d (verified %v); want verified %v",
					ssl.Client, ssl.Verify, verified, tt.wantVerified)
			}
			if !tt.wantVerified && (ssl.Verified() || ssl.Client != 0x01) {
				t.Errorf("SSL TLV without a verified certificate: got client 0x%02x verify %d; want 0x01, non-zero",
					ssl.Client, ssl.Verify)
			}
			for _, sub := range ssl.TLV {
				if sub.Type == subtypeSSLCN || sub.Type == subtypeSSLClientCert {
					t.Errorf("SSL sub-TLV 0x%02x present: %q", byte(sub.Type), sub.Value)
				}
			}
		})
	}
}

// checkNoClientIdentity fails when the raw header holds anything taken
// from the client certificate, or a CN or certificate TLV at top level.
func checkNoClientIdentity(t *testing.T, raw []byte, cert *x509.Certificate) {
	t.Helper()
	leaks := []struct {
		what string
		b    []byte
	}{
		{"the client certificate (DER)", cert.Raw},
		{"its common name", []byte(cert.Subject.CommonName)},
		{"its serial number", cert.SerialNumber.Bytes()},
		{"its public key", cert.RawSubjectPublicKeyInfo},
	}
	for _, l := range leaks {
		if bytes.Contains(raw, l.b) {
			t.Errorf("PROXY header holds %s", l.what)
		}
	}
	h := mustParseHeader(t, raw)
	tlvs, err := h.TLVs()
	if err != nil {
		t.Fatal(err)
	}
	for _, tlv := range tlvs {
		if tlv.Type == subtypeSSLCN || tlv.Type == subtypeSSLClientCert {
			t.Errorf("TLV 0x%02x present at top level", byte(tlv.Type))
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
