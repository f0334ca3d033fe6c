package proxy

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
	"github.com/rs/zerolog"

	"github.com/attlsd/attlsd/certs"
	"github.com/attlsd/attlsd/internal/testnet"
	"github.com/attlsd/attlsd/policy"
)

// devPKI makes a CA, server and client certificate once per test binary.
var devPKI = sync.OnceValues(func() (string, error) {
	dir, err := osMkdirTemp()
	if err != nil {
		return "", err
	}
	_, err = certs.InitDev(dir, nil, time.Now())
	return dir, err
})

type testPKI struct {
	server, client *certs.Pair
	pool           *x509.CertPool
}

func loadPKI(t testing.TB) testPKI {
	t.Helper()
	dir, err := devPKI()
	if err != nil {
		t.Fatal(err)
	}
	srv, err := certs.LoadPair(dir+"/server.pem", dir+"/server-key.pem")
	if err != nil {
		t.Fatal(err)
	}
	cli, err := certs.LoadPair(dir+"/client.pem", dir+"/client-key.pem")
	if err != nil {
		t.Fatal(err)
	}
	pool, err := certs.LoadPool(dir + "/ca.pem")
	if err != nil {
		t.Fatal(err)
	}
	return testPKI{srv, cli, pool}
}

// syncBuffer collects log lines from many goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// lines returns the logged JSON objects.
func (s *syncBuffer) lines() []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(s.b.String()), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

// closeLine waits for the one "connection closed" line.
func (s *syncBuffer) closeLine(t *testing.T) map[string]any {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		for _, l := range s.lines() {
			if l["message"] == "connection closed" {
				return l
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no connection closed line in log:\n%s", s.b.String())
	return nil
}

// backend accepts connections, reads the PROXY header and echoes the rest.
type backend struct {
	ln      net.Listener
	headers chan *proxyproto.Header
}

func startBackend(t *testing.T) *backend {
	t.Helper()
	b := &backend{ln: testnet.Listen(t), headers: make(chan *proxyproto.Header, 10)}
	testnet.Serve(b.ln, b.echo)
	return b
}

func (b *backend) echo(c net.Conn) {
	r := bufio.NewReader(c)
	h, err := proxyproto.Read(r)
	if err != nil {
		return
	}
	b.headers <- h
	io.Copy(c, r)
	c.(*net.TCPConn).CloseWrite()
}

// startServer runs a Server with one inbound listener holding rules.
func startServer(t *testing.T, rules ...*policy.Rule) (*Server, *syncBuffer) {
	t.Helper()
	pl := &policy.Listener{Addr: "127.0.0.1:0", Rules: rules}
	return startServerWith(t, &policy.Policy{Inbound: rules, Listeners: []*policy.Listener{pl}})
}

// startServerWith runs a Server for p and collects its log.
func startServerWith(t *testing.T, p *policy.Policy) (*Server, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	s := New(p, zerolog.New(logs))
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, logs
}

func tlsRule(t testing.TB, backendAddr string, auth policy.ClientAuth) *policy.Rule {
	pki := loadPKI(t)
	env := &policy.Environment{Name: "test", Pair: pki.server, Trust: pki.pool,
		HandshakeTimeout: time.Second}
	cfg := &tls.Config{
		Certificates: []tls.Certificate{pki.server.Cert},
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"h2", "http/1.1"},
		ClientCAs:    pki.pool,
	}
	if auth == policy.ClientAuthRequired {
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return &policy.Rule{Name: "api", TLS: true, Environment: env, ClientAuth: auth,
		TLSConfig: cfg, Backend: policy.Backend{Network: "tcp", Address: backendAddr}}
}

func clientConfig(t testing.TB, withCert bool) *tls.Config {
	pki := loadPKI(t)
	cfg := &tls.Config{RootCAs: pki.pool, ServerName: "localhost",
		NextProtos: []string{"h2"}}
	if withCert {
		cfg.Certificates = []tls.Certificate{pki.client.Cert}
	}
	return cfg
}

func TestServerTLSToBackend(t *testing.T) {
	be := startBackend(t)
	rule := tlsRule(t, be.ln.Addr().String(), policy.ClientAuthRequired)
	s, logs := startServer(t, rule)

	c, err := tls.Dial("tcp", s.Addrs()[0], clientConfig(t, true))
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("ping"))
	c.CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "ping" {
		t.Fatalf("echo: got %q, %v; want ping", got, err)
	}
	c.Close()

	h := <-be.headers
	if h.SourceAddr.String() != c.LocalAddr().String() {
		t.Errorf("header source: got %v, want %v", h.SourceAddr, c.LocalAddr())
	}
	line := logs.closeLine(t)
	want := map[string]any{"rule": "api", "sni": "localhost", "alpn": "h2",
		"tls_version": "TLSv1.3", "bytes_in": 4.0, "bytes_out": 4.0, "reason": "closed"}
	for k, v := range want {
		if line[k] != v {
			t.Errorf("log %s: got %v, want %v", k, line[k], v)
		}
	}
}

func TestServerRefusals(t *testing.T) {
	tests := []struct {
		name   string
		rule   func(*policy.Rule)
		client func(t *testing.T, addr string)
		reason string
		code   float64
	}{
		{
			name: "plain HTTP on a TLS port",
			client: func(t *testing.T, addr string) {
				c := dialRaw(t, addr)
				c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
				io.ReadAll(c)
			},
			reason: "cleartext or garbage", code: CodeCleartext,
		},
		{
			name: "no handshake in time",
			client: func(t *testing.T, addr string) {
				c := dialRaw(t, addr)
				c.Write([]byte{0x16, 0x03}) // a record header begun, never finished
				io.ReadAll(c)
			},
			reason: "handshake timed out", code: CodeTimeout,
		},
		{
			name: "required client certificate missing",
			rule: func(r *policy.Rule) {
				r.TLSConfig.ClientAuth = tls.RequireAndVerifyClientCert
			},
			client: func(t *testing.T, addr string) {
				c, err := tls.Dial("tcp", addr, clientConfig(t, false))
				if err == nil { // TLS 1.3: the alert arrives on first read
					_, err = c.Read(make([]byte, 1))
					c.Close()
				}
				if err == nil {
					t.Error("client without certificate was served")
				}
			},
			reason: "client certificate required", code: CodeNoClientCert,
		},
		{
			name: "client outside remote_addresses",
			rule: func(r *policy.Rule) {
				r.RemoteAddresses = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
			},
			client: func(t *testing.T, addr string) {
				io.ReadAll(dialRaw(t, addr))
			},
			reason: "no rule takes this client",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			be := startBackend(t)
			rule := tlsRule(t, be.ln.Addr().String(), policy.ClientAuthNone)
			if tt.rule != nil {
				tt.rule(rule)
			}
			s, logs := startServer(t, rule)
			tt.client(t, s.Addrs()[0])

			line := logs.closeLine(t)
			if r, _ := line["reason"].(string); !strings.Contains(r, tt.reason) {
				t.Errorf("reason: got %q, want it to contain %q", r, tt.reason)
			}
			if line["level"] != "warn" {
				t.Errorf("level: got %v, want warn", line["level"])
			}
			if tt.code != 0 && line["code"] != tt.code {
				t.Errorf("code: got %v, want %v", line["code"], tt.code)
			}
			select {
			case h := <-be.headers:
				t.Errorf("backend was dialled for a refused client: %v", h)
			case <-time.After(50 * time.Millisecond):
			}
		})
	}
}

// TestServerDeadBackend: a client that sends a request at once, before
// attlsd has found the backend dead, still sees its connection end in
// order rather than reset. The request is large, so that most of it is
// still unread in attlsd's socket when the dial fails.
func TestServerDeadBackend(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().String()
	ln.Close()
	s, logs := startServer(t, tlsRule(t, dead, policy.ClientAuthNone))

	c, err := tls.Dial("tcp", s.Addrs()[0], clientConfig(t, false))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	go c.Write(make([]byte, 1<<20)) // fails, or not, once attlsd closes
	if got, err := io.ReadAll(c); err != nil || len(got) != 0 {
		t.Errorf("client read: got %d bytes, %v; want none and a clean close", len(got), err)
	}
	c.Close()
	line := logs.closeLine(t)
	if line["level"] != "error" || !strings.Contains(line["reason"].(string), dead) {
		t.Errorf("log: got %v %q, want error naming %s", line["level"], line["reason"], dead)
	}
}

func TestServerCloseLeaksNothing(t *testing.T) {
	before := runtime.NumGoroutine()
	be := startBackend(t)
	rule := tlsRule(t, be.ln.Addr().String(), policy.ClientAuthNone)
	pl := &policy.Listener{Addr: "127.0.0.1:0", Rules: []*policy.Rule{rule}}
	s := New(&policy.Policy{Listeners: []*policy.Listener{pl}}, zerolog.Nop())
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	var open []*tls.Conn
	for range 5 { // connections left open mid-stream
		c, err := tls.Dial("tcp", s.Addrs()[0], clientConfig(t, false))
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte("x"))
		open = append(open, c)
	}
	<-be.headers
	s.Close()
	for _, c := range open {
		c.Close()
	}
	be.ln.Close()

	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before+1 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before+1 {
		t.Errorf("goroutines: got %d after Close, want at most %d", n, before+1)
	}
}

func dialRaw(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	t.Cleanup(func() { c.Close() })
	return c
}

// BenchmarkRelayTLS streams client to backend through a running Server
// over TLS 1.3, 16 KiB per operation.
func BenchmarkRelayTLS(b *testing.B) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go io.Copy(io.Discard, c)
		}
	}()
	rule := tlsRule(b, ln.Addr().String(), policy.ClientAuthNone)
	pl := &policy.Listener{Addr: "127.0.0.1:0", Rules: []*policy.Rule{rule}}
	s := New(&policy.Policy{Listeners: []*policy.Listener{pl}}, zerolog.Nop())
	if err := s.Start(); err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	c, err := tls.Dial("tcp", s.Addrs()[0], clientConfig(b, false))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	chunk := make([]byte, maxRecord)
	b.SetBytes(maxRecord)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.Write(chunk); err != nil {
			b.Fatal(err)
		}
	}
}
