package proxy

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"testing"
	"time"

	"github.com/attlsd/attlsd/policy"
)

// TestHandshakeRefusals runs the server handshake against what real
// sockets bring: bytes that only start like TLS, and real TLS clients
// that fail for a reason of their own. Each must be classified with the
// right kind and AT-TLS code.
func TestHandshakeRefusals(t *testing.T) {
	tests := []struct {
		name     string
		rule     func(*policy.Rule)
		client   func(c net.Conn)
		wantKind string
		wantCode int
	}{
		{"handshake-record-of-garbage", nil, send("\x16\x03\x01\x00\x05hello"), "cleartext", CodeCleartext},
		{"client-hello-too-short", nil, send("\x16\x03\x01\x00\x05\x01\x00\x00\x01X"), "cleartext", CodeCleartext},
		{"finished-instead-of-hello", nil, send("\x16\x03\x01\x00\x04\x14\x00\x00\x00"), "cleartext", CodeCleartext},
		{"unknown-handshake-type", nil, send("\x16\x03\x01\x00\x04\x63\x00\x00\x00"), "cleartext", CodeCleartext},
		{"oversized-record", nil, send("\x16\x03\x01\xff\xff"), "cleartext", CodeCleartext},
		{"alert-instead-of-hello", nil, send("\x15\x03\x01\x00\x02\x02\x0a"), "cleartext", CodeCleartext},
		{"plain-http", nil, send("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), "cleartext", CodeCleartext},
		{"no-version-in-common", func(r *policy.Rule) { r.TLSConfig.MinVersion = tls.VersionTLS13 },
			goClient(t, func(c *tls.Config) { c.MaxVersion = tls.VersionTLS12 }), "handshake_failed", 0},
		{"client-cert-of-unknown-ca", func(r *policy.Rule) { r.TLSConfig.ClientAuth = tls.VerifyClientCertIfGiven },
			goClient(t, func(c *tls.Config) { c.GetClientCertificate = foreignClientCert(t) }),
			"client_cert_unverified", 0},
		{"client-cert-required", func(r *policy.Rule) { r.TLSConfig.ClientAuth = tls.RequireAndVerifyClientCert },
			goClient(t, nil), "client_cert_required", CodeNoClientCert},
		{"client-leaves-mid-hello", nil, send("\x16\x03\x01\x00\x40\x01\x00\x00\x3c\x03\x03"), "client_left", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rule := tlsRule(t, "127.0.0.1:1", policy.ClientAuthNone)
			if tt.rule != nil {
				tt.rule(rule)
			}
			client, server := tcpPair(t)
			go tt.client(client)
			_, err := handshake(server, rule)
			var ref *refusal
			if !errors.As(err, &ref) {
				t.Fatalf("handshake: got %v, want a refusal", err)
			}
			if ref.kind != tt.wantKind || ref.code != tt.wantCode || !ref.handshake {
				t.Errorf("refusal: got kind %q, code %d (%v); want %q, %d",
					ref.kind, ref.code, ref, tt.wantKind, tt.wantCode)
			}
		})
	}
}

// send returns a client that writes b, reads until attlsd closes, then
// closes; one that leaves mid-hello is simply one whose bytes end early.
func send(b string) func(net.Conn) {
	return func(c net.Conn) {
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		c.Write([]byte(b))
		c.(*net.TCPConn).CloseWrite()
		io.Copy(io.Discard, c)
	}
}

// goClient returns a crypto/tls client, adjusted by adjust, that
// handshakes and reads once, so that an alert sent after a TLS 1.3
// handshake reaches it.
func goClient(t *testing.T, adjust func(*tls.Config)) func(net.Conn) {
	cfg := clientConfig(t, false)
	if adjust != nil {
		adjust(cfg)
	}
	return func(c net.Conn) {
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		tc := tls.Client(c, cfg)
		if tc.Handshake() == nil {
			tc.Read(make([]byte, 1))
		}
	}
}

// foreignClientCert presents a client certificate that no CA of the
// tests signed, whatever CAs the server names.
func foreignClientCert(t *testing.T) func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert := &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	return func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
}

// TestClassifyByFlight: a parse failure means garbage only on the first
// flight; after a ClientHello was accepted it is a broken TLS peer. A
// record that is no TLS at all is garbage whenever it comes.
func TestClassifyByFlight(t *testing.T) {
	decodeErr := &net.OpError{Op: "local error", Err: errors.New("tls: error decoding message")}
	tooBig := fmt.Errorf("tls: handshake message of length 6646892 bytes exceeds maximum of 65536 bytes")
	unexpected := errors.New("tls: received unexpected handshake message of type *tls.finishedMsg " +
		"when waiting for *tls.clientHelloMsg")
	remote := &net.OpError{Op: "remote error", Err: errors.New("tls: unexpected message")}
	record := tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}
	versions := errors.New("tls: client offered only unsupported versions: [303]")
	tests := []struct {
		name        string
		err         error
		firstFlight bool
		wantKind    string
	}{
		{"decode-error/first-flight", decodeErr, true, "cleartext"},
		{"decode-error/later", decodeErr, false, "handshake_failed"},
		{"exceeds-maximum/first-flight", tooBig, true, "cleartext"},
		{"exceeds-maximum/later", tooBig, false, "handshake_failed"},
		{"unexpected-message/first-flight", unexpected, true, "cleartext"},
		{"remote-alert/first-flight", remote, true, "cleartext"},
		{"remote-alert/later", remote, false, "handshake_failed"},
		{"record-header/first-flight", record, true, "cleartext"},
		{"record-header/later", record, false, "cleartext"},
		{"no-version-in-common", versions, true, "handshake_failed"},
		{"eof", io.ErrUnexpectedEOF, true, "client_left"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := classify(tt.err, tt.firstFlight)
			wantCode := 0
			if tt.wantKind == "cleartext" {
				wantCode = CodeCleartext
			}
			if got.kind != tt.wantKind || got.code != wantCode {
				t.Errorf("classify(%q, first flight %v): got kind %q, code %d; want %q, %d",
					tt.err, tt.firstFlight, got.kind, got.code, tt.wantKind, wantCode)
			}
		})
	}
}

// TestSigScheme names the scheme only where the key and version fix it
// and a signature was made: never on a resumed session.
func TestSigScheme(t *testing.T) {
	p256 := ecdsaLeaf(t, elliptic.P256())
	p384 := ecdsaLeaf(t, elliptic.P384())
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	ed := &x509.Certificate{PublicKey: edKey.Public()}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaLeaf := &x509.Certificate{PublicKey: &rsaKey.PublicKey}
	tests := []struct {
		name    string
		leaf    *x509.Certificate
		version uint16
		resumed bool
		want    string
	}{
		{"p256/TLSv1.3", p256, tls.VersionTLS13, false, "ecdsa_secp256r1_sha256"},
		{"p384/TLSv1.3", p384, tls.VersionTLS13, false, "ecdsa_secp384r1_sha384"},
		{"p256/TLSv1.2", p256, tls.VersionTLS12, false, ""},
		{"ed25519/TLSv1.2", ed, tls.VersionTLS12, false, "ed25519"},
		{"rsa/TLSv1.3", rsaLeaf, tls.VersionTLS13, false, ""},
		{"no-certificate", nil, tls.VersionTLS13, false, ""},
		{"p256/TLSv1.3/resumed", p256, tls.VersionTLS13, true, ""},
		{"ed25519/TLSv1.3/resumed", ed, tls.VersionTLS13, true, ""},
		{"ed25519/TLSv1.2/resumed", ed, tls.VersionTLS12, true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cs := &tls.ConnectionState{Version: tt.version, DidResume: tt.resumed}
			if got := sigScheme(cs, tt.leaf); got != tt.want {
				t.Errorf("sigScheme: got %q, want %q", got, tt.want)
			}
		})
	}
}

func ecdsaLeaf(t *testing.T, curve elliptic.Curve) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &x509.Certificate{PublicKey: &key.PublicKey}
}
