package proxy

import (
	"crypto/tls"
	"io"
	"testing"

	proxyproto "github.com/pires/go-proxyproto"
	"github.com/pires/go-proxyproto/tlvparse"

	"github.com/attlsd/attlsd/policy"
)

// TestResumedSessionHasNoSigScheme connects twice with one session cache.
// The full handshake reports the server's signature scheme to the
// backend; the resumed one, which signs nothing, must not.
func TestResumedSessionHasNoSigScheme(t *testing.T) {
	be := startBackend(t)
	s, _ := startServer(t, tlsRule(t, be.ln.Addr().String(), policy.ClientAuthNone))
	cfg := clientConfig(t, false)
	cfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)

	tests := []struct {
		name        string
		wantResumed bool
		wantScheme  string
	}{
		{"full-handshake", false, "ecdsa_secp256r1_sha256"},
		{"resumed", true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := tls.Dial("tcp", s.Addrs()[0], cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			// Reading to the end takes in the TLS 1.3 session ticket,
			// which arrives after the handshake.
			c.Write([]byte("ping"))
			c.CloseWrite()
			if _, err := io.ReadAll(c); err != nil {
				t.Fatal(err)
			}
			if got := c.ConnectionState().DidResume; got != tt.wantResumed {
				t.Fatalf("client resumed: got %v, want %v", got, tt.wantResumed)
			}
			scheme, present := sslSub(t, <-be.headers, proxyproto.PP2_SUBTYPE_SSL_SIG_SCHEME)
			if scheme != tt.wantScheme || present != (tt.wantScheme != "") {
				t.Errorf("SSL_SIG_SCHEME: got %q (present %v), want %q", scheme, present, tt.wantScheme)
			}
		})
	}
}

// sslSub returns a sub-TLV of the header's SSL TLV.
func sslSub(t *testing.T, h *proxyproto.Header, typ proxyproto.PP2Type) (string, bool) {
	t.Helper()
	tlvs, err := h.TLVs()
	if err != nil {
		t.Fatal(err)
	}
	ssl, ok := tlvparse.FindSSL(tlvs)
	if !ok {
		t.Fatalf("no SSL TLV in header")
	}
	for _, sub := range ssl.TLV {
		if sub.Type == typ {
			return string(sub.Value), true
		}
	}
	return "", false
}
