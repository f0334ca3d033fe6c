package proxy

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/hex"
	"flag"
	"net"
	"os"
	"path/filepath"
	"testing"

	proxyproto "github.com/pires/go-proxyproto"
	"github.com/pires/go-proxyproto/tlvparse"

	"github.com/attlsd/attlsd/policy"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata")

// sampleMeta is a TLS 1.3 connection with SNI, ALPN and a verified client
// certificate, fixed so that its header bytes can be kept as a golden file.
func sampleMeta() *Meta {
	return &Meta{
		Client: &net.TCPAddr{IP: net.ParseIP("192.0.2.10"), Port: 50123},
		Local:  &net.TCPAddr{IP: net.ParseIP("192.0.2.1"), Port: 8443},
		ConnID: "1a2b3c4d-2a",
		Rule:   "api",
		TLS: &tls.ConnectionState{
			Version:            tls.VersionTLS13,
			CipherSuite:        tls.TLS_AES_128_GCM_SHA256,
			CurveID:            tls.X25519MLKEM768,
			ServerName:         "api.example.com",
			NegotiatedProtocol: "h2",
		},
		SigScheme:    "ecdsa_secp256r1_sha256",
		CertVerified: true,
	}
}

func TestHeaderGolden(t *testing.T) {
	tests := []struct {
		name   string
		format policy.ProxyProtocol
		meta   *Meta
	}{
		{"v2_tls13", policy.ProxyV2, sampleMeta()},
		{"v2_cleartext", policy.ProxyV2, &Meta{
			Client: &net.TCPAddr{IP: net.ParseIP("2001:db8::10"), Port: 50123},
			Local:  &net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 8080},
			ConnID: "1a2b3c4d-2b", Rule: "plain"}},
		{"v1_tls13", policy.ProxyV1, sampleMeta()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := header(tt.format, tt.meta)
			if err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", tt.name+".golden")
			dump := []byte(hex.Dump(got))
			if *update {
				os.WriteFile(golden, dump, 0o644)
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if !bytes.Equal(dump, want) {
				t.Errorf("header bytes differ from %s:\ngot\n%swant\n%s", golden, dump, want)
			}
		})
	}
}

func TestHeaderNone(t *testing.T) {
	got, err := header(policy.ProxyNone, sampleMeta())
	if err != nil || got != nil {
		t.Errorf("got %q, %v; want nothing", got, err)
	}
}

// TestHeaderReadBack parses the header with the PROXY library's reader and
// checks every field attlsd promises, and that nothing identifies the
// client certificate.
func TestHeaderReadBack(t *testing.T) {
	m := sampleMeta()
	raw, err := header(policy.ProxyV2, m)
	if err != nil {
		t.Fatal(err)
	}
	h, err := proxyproto.Read(bufio.NewReader(bytes.NewReader(raw)))
	if err != nil {
		t.Fatalf("read back: %v", err)
	}
	if h.SourceAddr.String() != m.Client.String() || h.DestinationAddr.String() != m.Local.String() {
		t.Errorf("addresses: got %v -> %v, want %v -> %v",
			h.SourceAddr, h.DestinationAddr, m.Client, m.Local)
	}
	tlvs, err := h.TLVs()
	if err != nil {
		t.Fatal(err)
	}
	want := map[proxyproto.PP2Type]string{
		proxyproto.PP2_TYPE_ALPN:      "h2",
		proxyproto.PP2_TYPE_AUTHORITY: "api.example.com",
		proxyproto.PP2_TYPE_UNIQUE_ID: "1a2b3c4d-2a",
		TLVRule:                       "api",
	}
	for _, tlv := range tlvs {
		if w, ok := want[tlv.Type]; ok {
			if string(tlv.Value) != w {
				t.Errorf("TLV %#x: got %q, want %q", tlv.Type, tlv.Value, w)
			}
			delete(want, tlv.Type)
		}
	}
	for typ := range want {
		t.Errorf("TLV %#x missing", typ)
	}

	ssl, ok := tlvparse.FindSSL(tlvs)
	if !ok {
		t.Fatal("SSL TLV missing")
	}
	checks := []struct {
		name string
		get  func() (string, bool)
		want string
	}{
		{"version", ssl.SSLVersion, "TLSv1.3"},
		{"cipher", ssl.SSLCipher, "TLS_AES_128_GCM_SHA256"},
		{"group", ssl.SSLGroup, "X25519MLKEM768"},
		{"sig scheme", ssl.SSLSigScheme, "ecdsa_secp256r1_sha256"},
	}
	for _, c := range checks {
		if got, _ := c.get(); got != c.want {
			t.Errorf("SSL %s: got %q, want %q", c.name, got, c.want)
		}
	}
	if !ssl.ClientSSL() || !ssl.ClientCertConn() || !ssl.Verified() {
		t.Errorf("SSL flags: got client=%#x verify=%d, want TLS, cert, verified", ssl.Client, ssl.Verify)
	}
	if cn, ok := ssl.ClientCN(); ok {
		t.Errorf("SSL TLV carries a client CN %q; it must never", cn)
	}
	if _, ok := ssl.ClientCert(); ok {
		t.Error("SSL TLV carries a client certificate; it must never")
	}
}
