package policy

import (
	"os"
	"path/filepath"
	"testing"
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
