package proxy

import (
	"crypto/tls"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/attlsd/attlsd/certs"
	"github.com/attlsd/attlsd/policy"
)

// tlsEchoServer serves TLS with cfg and echoes what it reads until EOF.
func tlsEchoServer(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
				c.(*tls.Conn).CloseWrite()
			}()
		}
	}()
	return ln.Addr().String()
}

// outboundRule is a port-mapped rule to endpoint that trusts the dev CA.
func outboundRule(t *testing.T, endpoint string, withCert bool) *policy.Rule {
	pki := loadPKI(t)
	env := &policy.Environment{Name: "client", Trust: pki.pool, HandshakeTimeout: time.Second}
	cfg := &tls.Config{RootCAs: pki.pool, ServerName: "localhost",
		MinVersion: tls.VersionTLS12, ClientSessionCache: tls.NewLRUClientSessionCache(8)}
	if withCert {
		env.Pair = pki.client
		cfg.Certificates = []tls.Certificate{pki.client.Cert}
	}
	return &policy.Rule{Name: "out", Direction: policy.Outbound, Environment: env,
		TLSConfig: cfg, Endpoint: endpoint, ServerName: "localhost",
		ConnectTimeout: time.Second}
}

// startOutbound runs a Server with one port-mapped outbound listener.
func startOutbound(t *testing.T, rule *policy.Rule) (string, *syncBuffer) {
	t.Helper()
	pl := &policy.Listener{Addr: "127.0.0.1:0", Kind: policy.ListenOutbound,
		Rules: []*policy.Rule{rule}}
	s, logs := startServerWith(t, &policy.Policy{Outbound: []*policy.Rule{rule},
		Listeners: []*policy.Listener{pl}})
	return s.Addrs()[0], logs
}

func serverTLS(t *testing.T) *tls.Config {
	pki := loadPKI(t)
	return &tls.Config{Certificates: []tls.Certificate{pki.server.Cert}}
}

func TestOutboundToVerifiedServer(t *testing.T) {
	endpoint := tlsEchoServer(t, serverTLS(t))
	addr, logs := startOutbound(t, outboundRule(t, endpoint, false))

	app := dialRaw(t, addr)
	app.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
	app.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(app)
	if err != nil || string(got) != "GET / HTTP/1.0\r\n\r\n" {
		t.Fatalf("app read %q, %v; want the echo", got, err)
	}
	line := logs.closeLine(t)
	want := map[string]any{"direction": "outbound", "rule": "out", "endpoint": endpoint,
		"sni": "localhost", "tls_version": "TLSv1.3", "reason": "closed", "level": "info"}
	for k, v := range want {
		if line[k] != v {
			t.Errorf("log %s: got %v, want %v", k, line[k], v)
		}
	}
}

func TestOutboundFailures(t *testing.T) {
	pki := loadPKI(t)
	expired, oldCA := expiredServer(t)
	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	refused := closed.Addr().String()
	closed.Close()
	silent, _ := net.Listen("tcp", "127.0.0.1:0") // accepts, never speaks
	t.Cleanup(func() { silent.Close() })

	tests := []struct {
		name     string
		endpoint string
		rule     func(*policy.Rule)
		reason   string
	}{
		{"refused", refused, nil, "connection refused"},
		{"handshake timeout", silent.Addr().String(), nil, "no handshake within 1s"},
		{"unknown authority", tlsEchoServer(t, serverTLS(t)),
			func(r *policy.Rule) { r.TLSConfig.RootCAs = nil },
			"signed by an unknown authority"},
		{"name mismatch", tlsEchoServer(t, serverTLS(t)),
			func(r *policy.Rule) {
				r.ServerName = "api.example.com"
				r.TLSConfig.ServerName = "api.example.com"
			},
			`not valid for "api.example.com"`},
		{"expired", expired,
			func(r *policy.Rule) { r.TLSConfig.RootCAs.AppendCertsFromPEM(oldCA) },
			"has expired"},
		{"client certificate required, none configured", tlsEchoServer(t, &tls.Config{
			Certificates: []tls.Certificate{pki.server.Cert},
			ClientAuth:   tls.RequireAndVerifyClientCert, ClientCAs: pki.pool}),
			nil, "requires a client certificate"},
		{"client certificate rejected", tlsEchoServer(t, &tls.Config{
			Certificates: []tls.Certificate{pki.server.Cert},
			ClientAuth:   tls.RequireAndVerifyClientCert}), // trusts no client CA
			func(r *policy.Rule) {
				r.Environment.Pair = pki.client
				r.TLSConfig.Certificates = []tls.Certificate{pki.client.Cert}
			}, "rejected the client certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rule := outboundRule(t, tt.endpoint, false)
			rule.TLSConfig = rule.TLSConfig.Clone()
			if tt.rule != nil {
				tt.rule(rule)
			}
			addr, logs := startOutbound(t, rule)
			app := dialRaw(t, addr)
			app.Write([]byte("hello"))
			app.(*net.TCPConn).CloseWrite()
			io.ReadAll(app)

			line := logs.closeLine(t)
			if r, _ := line["reason"].(string); !strings.Contains(r, tt.reason) {
				t.Errorf("reason: got %q, want it to contain %q", r, tt.reason)
			}
			if line["level"] != "error" {
				t.Errorf("level: got %v, want error", line["level"])
			}
		})
	}
}

func TestOutboundRefusesTLSInsideTLS(t *testing.T) {
	endpoint := tlsEchoServer(t, serverTLS(t))
	addr, logs := startOutbound(t, outboundRule(t, endpoint, false))

	// The app wrongly speaks TLS itself into the cleartext port.
	app, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	tc := tls.Client(app, &tls.Config{ServerName: "localhost", InsecureSkipVerify: true})
	tc.SetDeadline(time.Now().Add(5 * time.Second))
	if err := tc.Handshake(); err == nil {
		t.Error("app's own TLS handshake succeeded through an outbound rule")
	}
	line := logs.closeLine(t)
	if r, _ := line["reason"].(string); !strings.Contains(r, "TLS inside TLS") {
		t.Errorf("reason: got %q, want it to name TLS inside TLS", r)
	}
	if line["level"] != "warn" || line["bytes_in"] != 0.0 {
		t.Errorf("got level %v, bytes_in %v; want warn and nothing forwarded",
			line["level"], line["bytes_in"])
	}
}

// expiredServer serves a certificate from a dev PKI made two years ago,
// and returns that PKI's CA so that expiry can be the only fault.
func expiredServer(t *testing.T) (string, []byte) {
	t.Helper()
	dir := t.TempDir() + "/old"
	if _, err := certs.InitDev(dir, nil, time.Now().AddDate(-2, 0, 0)); err != nil {
		t.Fatal(err)
	}
	old, err := certs.LoadPair(dir+"/server.pem", dir+"/server-key.pem")
	if err != nil {
		t.Fatal(err)
	}
	ca, err := os.ReadFile(dir + "/ca.pem")
	if err != nil {
		t.Fatal(err)
	}
	return tlsEchoServer(t, &tls.Config{Certificates: []tls.Certificate{old.Cert}}), ca
}
