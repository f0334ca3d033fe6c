package proxy

import (
	"crypto/tls"
	"io"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/attlsd/attlsd/certs"
	"github.com/attlsd/attlsd/internal/testnet"
	"github.com/attlsd/attlsd/policy"
)

// tlsEchoServer serves TLS with cfg and echoes what it reads until EOF.
func tlsEchoServer(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	return tlsServer(t, cfg, func(c *tls.Conn) {
		io.Copy(c, c)
		c.CloseWrite()
	})
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

// TestOutboundRefusesTLSInsideTLS has the app wrongly speak TLS itself
// into the cleartext port, its ClientHello in one write or split, to an
// endpoint that is up or down. The refusal must name TLS inside TLS, not
// the endpoint, and come before attlsd connects to the endpoint at all.
func TestOutboundRefusesTLSInsideTLS(t *testing.T) {
	tests := []struct {
		name  string
		split int // bytes of the first write, 0 for one write
		down  bool
	}{
		{"one write", 0, false},
		{"split 1+rest", 1, false},
		{"split 4+rest", 4, false},
		{"endpoint down", 0, true},
		{"endpoint down, split 1+rest", 1, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			endpoint, accepted := countingEndpoint(t, tt.down)
			addr, logs := startOutbound(t, outboundRule(t, endpoint, false))
			app := &splitConn{Conn: dialRaw(t, addr), first: tt.split}
			tc := tls.Client(app, &tls.Config{ServerName: "localhost", InsecureSkipVerify: true})
			tc.SetDeadline(time.Now().Add(5 * time.Second))
			if err := tc.Handshake(); err == nil {
				t.Error("app's own TLS handshake succeeded through an outbound rule")
			}

			line := logs.closeLine(t)
			const want = "the app sent a TLS ClientHello"
			if r, _ := line["reason"].(string); !strings.HasPrefix(r, want) {
				t.Errorf("reason: got %q, want it to name the app's ClientHello", r)
			}
			if line["level"] != "warn" || line["bytes_in"] != 0.0 {
				t.Errorf("got level %v, bytes_in %v; want warn and nothing forwarded",
					line["level"], line["bytes_in"])
			}
			if n := accepted(); n != 0 {
				t.Errorf("endpoint accepted %d connections, want 0", n)
			}
		})
	}
}

// TestOutboundAppBytesKept checks that the bytes judged before or inside
// the relay all reach the endpoint, in order, when they are cleartext: a
// one-byte request whose answer the app awaits without closing, and the
// start of a record header that the app ends, or completes as cleartext,
// before or after attlsd has dialled.
func TestOutboundAppBytesKept(t *testing.T) {
	tests := []struct {
		name   string
		late   bool     // the app speaks once the endpoint's handshake is done
		writes []string // with a pause between them
		fin    bool     // then the app half-closes
	}{
		{"one byte, answer awaited", false, []string{"y"}, false},
		// Bytes that stop short of a record header go on once the
		// handshake timeout (a second here) has passed.
		{"header start, answer awaited", false, []string{"\x16"}, false},
		{"late header start, answer awaited", true, []string{"\x16\x03"}, false},
		{"late header start, answer awaited, then more", true, []string{"\x16", "\x03"}, false},
		{"header start, then end", false, []string{"\x16\x03"}, true},
		{"late header start, then end", true, []string{"\x16\x03"}, true},
		{"late header start, then cleartext", true,
			[]string{"\x16", "\x03\x03\x00\x00hello"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			handshook := make(chan struct{})
			endpoint := tlsServer(t, serverTLS(t), func(c *tls.Conn) {
				close(handshook)
				io.Copy(c, c)
				c.CloseWrite()
			})
			addr, logs := startOutbound(t, outboundRule(t, endpoint, false))
			app := dialRaw(t, addr)
			app.SetDeadline(time.Now().Add(5 * time.Second))
			if tt.late {
				<-handshook
			}
			want := strings.Join(tt.writes, "")
			for i, w := range tt.writes {
				if i > 0 {
					time.Sleep(2 * firstBytesWait)
				}
				app.Write([]byte(w))
			}
			if tt.fin {
				app.(*net.TCPConn).CloseWrite()
			}
			got := make([]byte, len(want))
			if _, err := io.ReadFull(app, got); err != nil || string(got) != want {
				t.Fatalf("echo: got %q, %v; want %q", got, err, want)
			}
			app.Close()
			if line := logs.closeLine(t); line["bytes_in"] != float64(len(want)) {
				t.Errorf("bytes_in: got %v, want %d", line["bytes_in"], len(want))
			}
		})
	}
}

// TestOutboundRefusesLateHello has the app say nothing until attlsd has
// given up waiting for it and finished the endpoint's handshake, then
// send a ClientHello split after its first byte. The relay must judge
// the header as a whole and hand none of it on.
func TestOutboundRefusesLateHello(t *testing.T) {
	handshook := make(chan struct{})
	got := make(chan int64, 1)
	endpoint := tlsServer(t, serverTLS(t), func(c *tls.Conn) {
		close(handshook)
		n, _ := io.Copy(io.Discard, c)
		got <- n
	})
	addr, logs := startOutbound(t, outboundRule(t, endpoint, false))
	app := dialRaw(t, addr)
	select {
	case <-handshook:
	case <-time.After(5 * time.Second):
		t.Fatal("attlsd did not dial the endpoint for a silent app")
	}
	hello := append(append([]byte(nil), helloHeader...), make([]byte, 512)...)
	sc := &splitConn{Conn: app, first: 1}
	if _, err := sc.Write(hello); err != nil {
		t.Fatalf("app write: %v", err)
	}

	line := logs.closeLine(t)
	if r, _ := line["reason"].(string); !strings.HasPrefix(r, "the app sent a TLS ClientHello") {
		t.Errorf("reason: got %q, want it to name the app's ClientHello", r)
	}
	if line["level"] != "warn" || line["bytes_in"] != 0.0 {
		t.Errorf("got level %v, bytes_in %v; want warn and nothing forwarded",
			line["level"], line["bytes_in"])
	}
	select {
	case n := <-got:
		if n != 0 {
			t.Errorf("endpoint read %d bytes, want 0", n)
		}
	case <-time.After(5 * time.Second):
		t.Error("endpoint connection still open after the refusal")
	}
}

// tlsServer serves TLS with cfg and runs handle on each connection once
// its handshake is done.
func tlsServer(t *testing.T, cfg *tls.Config, handle func(*tls.Conn)) string {
	t.Helper()
	ln := testnet.Listen(t)
	testnet.Serve(tls.NewListener(ln, cfg), func(c net.Conn) {
		if tc := c.(*tls.Conn); tc.Handshake() == nil {
			handle(tc)
		}
	})
	return ln.Addr().String()
}

// countingEndpoint returns a listening address that counts the
// connections it accepts, or, when down, an address where nothing
// listens.
func countingEndpoint(t *testing.T, down bool) (string, func() int64) {
	t.Helper()
	ln := testnet.Listen(t)
	addr := ln.Addr().String()
	var n atomic.Int64
	if down {
		ln.Close()
		return addr, n.Load
	}
	testnet.Serve(ln, func(net.Conn) { n.Add(1) })
	return addr, n.Load
}

// splitConn sends its first Write in two: first bytes, a pause, the
// rest. Go sets TCP_NODELAY, so each part leaves as its own segment.
type splitConn struct {
	net.Conn
	first int // 0: no split
	done  bool
}

func (s *splitConn) Write(p []byte) (int, error) {
	if s.done || s.first == 0 || len(p) <= s.first {
		return s.Conn.Write(p)
	}
	s.done = true
	n, err := s.Conn.Write(p[:s.first])
	if err != nil {
		return n, err
	}
	time.Sleep(2 * firstBytesWait) // longer than attlsd waits for a first byte
	m, err := s.Conn.Write(p[s.first:])
	return n + m, err
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
