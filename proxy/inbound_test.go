package proxy

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

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

// TestKeepAliveOffForLoopbackBackends: a backend dialled on loopback gets
// no TCP keepalive; any other gets Go's.
func TestKeepAliveOffForLoopbackBackends(t *testing.T) {
	be := startBackend(t)
	rule := &policy.Rule{Backend: policy.Backend{Network: "tcp", Address: be.ln.Addr().String()}}
	c, err := dial(context.Background(), rule)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var on int
	rc.Control(func(fd uintptr) { on, err = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_KEEPALIVE) })
	if err != nil || on != 0 {
		t.Errorf("SO_KEEPALIVE on a loopback backend: got %d (%v), want 0", on, err)
	}
	for addr, want := range map[string]time.Duration{"[::1]:9000": -1, "10.0.0.1:9000": 0,
		"backend.internal:9000": 0} {
		if got := keepAlive(policy.Backend{Network: "tcp", Address: addr}); got != want {
			t.Errorf("keepAlive(%s): got %v, want %v", addr, got, want)
		}
	}
}
