package policy

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// TestTrustKeepsEachCertificateOnce: a CA named on its own and again
// inside a bundle is trusted once, in its first place.
func TestTrustKeepsEachCertificateOnce(t *testing.T) {
	dir := testDir(t)
	ca, err := os.ReadFile(filepath.Join(dir, "certs", "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	client, err := os.ReadFile(filepath.Join(dir, "certs", "client.pem"))
	if err != nil {
		t.Fatal(err)
	}
	bundle := append(append(append([]byte{}, client...), ca...), ca...)
	writeTestFile(t, filepath.Join(dir, "certs", "bundle.pem"), bundle, 0o644)

	tests := []struct {
		name  string
		trust string
		want  []string // subjects' common names, in order
	}{
		{"alone", `["certs/ca.pem"]`, []string{"attlsd dev CA"}},
		{"ca then bundle", `["certs/ca.pem", "certs/bundle.pem"]`, []string{"attlsd dev CA", "attlsd dev client"}},
		{"bundle then ca", `["certs/bundle.pem", "certs/ca.pem"]`, []string{"attlsd dev client", "attlsd dev CA"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := parseString(t, dir, `environment "e" {
  trust = `+tt.trust+`
}
outbound "o" {
  port        = 7000
  environment = "e"
  endpoint    = "example.com:443"
}
`)
			var got []string
			for _, c := range p.Environments[0].TrustCerts() {
				got = append(got, c.Subject.CommonName)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("trusted: got %q, want %q", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("trusted: got %q, want %q", got, tt.want)
				}
			}
		})
	}
}

// TestCertificateExpiresSoon: a server certificate loads with a warning
// that gives its end when less than 14 days are left, or less than a fifth
// of its validity for a short-lived one; with more time left it loads
// without any diagnostic.
func TestCertificateExpiresSoon(t *testing.T) {
	const day = 24 * time.Hour
	now := time.Now()
	tests := []struct {
		name       string
		notBefore  time.Time
		notAfter   time.Time
		wantWithin string // "" wants no warning
	}{
		{"a year, 5 days left", now.Add(-360 * day), now.Add(5 * day), "14 days"},
		{"a year, 13 days left", now.Add(-352 * day), now.Add(13 * day), "14 days"},
		{"a year, 25 days left", now.Add(-340 * day), now.Add(25 * day), ""},
		{"10 hours, 1 hour left", now.Add(-9 * time.Hour), now.Add(time.Hour), "2h"},
		{"10 hours, 9 hours left", now.Add(-time.Hour), now.Add(9 * time.Hour), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			writeServerPair(t, dir, tt.notBefore, tt.notAfter)
			_, diags := Parse([]byte(`environment "web" {
  certificate = "server.pem"
  private_key = "server-key.pem"
}
inbound "api" {
  port        = 8443
  environment = "web"
  backend     = "127.0.0.1:9080"
}
`), "p.hcl", dir)
			got := FormatDiagnostics(diags)
			want := ""
			if tt.wantWithin != "" {
				want = "p.hcl:2:17: warning: Certificate expires soon: certificate " +
					strconv.Quote(filepath.Join(dir, "server.pem")) + " expires on " +
					tt.notAfter.UTC().Format("2006-01-02 15:04 UTC") + ", within " +
					tt.wantWithin + "; renew it\n"
			}
			if got != want {
				t.Errorf("got %q, want %q", got, want)
			}
		})
	}
}

// writeServerPair writes a self-signed server certificate valid from
// notBefore to notAfter, server.pem, and its key, server-key.pem, to dir.
func writeServerPair(t *testing.T, dir string, notBefore, notAfter time.Time) {
	t.Helper()
	keyPEM := newKeyPEM(t)
	block, _ := pem.Decode(keyPEM)
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	signer := key.(*ecdsa.PrivateKey)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "short-lived"},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &signer.PublicKey, signer)
	if err != nil {
		t.Fatal(err)
	}
	writeTestFile(t, filepath.Join(dir, "server.pem"),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	writeTestFile(t, filepath.Join(dir, "server-key.pem"), keyPEM, 0o600)
}
