package policy

import (
	"crypto/tls"
	"slices"
	"testing"
)

func TestTLSConfig(t *testing.T) {
	dir := testDir(t)
	p := parseString(t, dir, `
environment "web" {
  certificate   = "certs/server.pem"
  private_key   = "certs/server-key.pem"
  trust         = ["certs/ca.pem"]
  cipher_suites = ["TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", "C02B"]
  curves        = ["X25519", "P-256"]
  alpn          = ["http/1.1"]
}
environment "modern" {
  certificate  = "certs/server.pem"
  private_key  = "certs/server-key.pem"
  tls_versions = ["1.3"]
}
inbound "none" {
  port = 8001
  environment = "web"
  backend = "127.0.0.1:9000"
}
inbound "passthru" {
  port = 8002
  environment = "web"
  client_auth = "passthru"
  backend = "127.0.0.1:9000"
}
inbound "full" {
  port = 8003
  environment = "web"
  client_auth = "full"
  backend = "127.0.0.1:9000"
}
inbound "required" {
  port = 8004
  environment = "web"
  client_auth = "required"
  backend = "127.0.0.1:9000"
}
inbound "tls13" {
  port = 8005
  environment = "modern"
  backend = "127.0.0.1:9000"
}
inbound "plain" {
  port = 8006
  tls = false
  backend = "127.0.0.1:9000"
}
`)
	tests := []struct {
		rule       string
		clientAuth tls.ClientAuthType
		min, max   uint16
	}{
		{"none", tls.NoClientCert, tls.VersionTLS12, tls.VersionTLS13},
		{"passthru", tls.RequestClientCert, tls.VersionTLS12, tls.VersionTLS13},
		{"full", tls.VerifyClientCertIfGiven, tls.VersionTLS12, tls.VersionTLS13},
		{"required", tls.RequireAndVerifyClientCert, tls.VersionTLS12, tls.VersionTLS13},
		{"tls13", tls.NoClientCert, tls.VersionTLS13, tls.VersionTLS13},
	}
	for _, tt := range tests {
		t.Run(tt.rule, func(t *testing.T) {
			c := ruleNamed(t, p, tt.rule).TLSConfig
			if c == nil {
				t.Fatal("got nil TLSConfig")
			}
			if c.ClientAuth != tt.clientAuth {
				t.Errorf("got ClientAuth %v, want %v", c.ClientAuth, tt.clientAuth)
			}
			if c.MinVersion != tt.min || c.MaxVersion != tt.max {
				t.Errorf("got versions %#x-%#x, want %#x-%#x",
					c.MinVersion, c.MaxVersion, tt.min, tt.max)
			}
			if len(c.Certificates) != 1 || c.Certificates[0].Leaf == nil {
				t.Errorf("got %d certificates, want 1 with its leaf", len(c.Certificates))
			}
		})
	}

	t.Run("web settings", func(t *testing.T) {
		c := ruleNamed(t, p, "full").TLSConfig
		wantSuites := []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}
		if !slices.Equal(c.CipherSuites, wantSuites) {
			t.Errorf("got suites %#x, want %#x", c.CipherSuites, wantSuites)
		}
		wantCurves := []tls.CurveID{tls.X25519, tls.CurveP256}
		if !slices.Equal(c.CurvePreferences, wantCurves) {
			t.Errorf("got curves %v, want %v", c.CurvePreferences, wantCurves)
		}
		if !slices.Equal(c.NextProtos, []string{"http/1.1"}) {
			t.Errorf("got ALPN %q, want [http/1.1]", c.NextProtos)
		}
		if c.ClientCAs == nil {
			t.Error("got nil ClientCAs, want the trust pool")
		}
	})
	t.Run("cleartext", func(t *testing.T) {
		r := ruleNamed(t, p, "plain")
		if r.TLSConfig != nil || r.Environment != nil {
			t.Errorf("got TLSConfig %v, environment %v, want both nil", r.TLSConfig, r.Environment)
		}
	})
	t.Run("own config per rule", func(t *testing.T) {
		if ruleNamed(t, p, "none").TLSConfig == ruleNamed(t, p, "full").TLSConfig {
			t.Error("got one shared *tls.Config, want one per rule")
		}
	})
}

// TestClientTLSConfig checks the TLS client configuration of outbound
// rules: the environment's trust, versions, cipher suites, curves, ALPN
// and client certificate, the rule's server name, and a session cache of
// its own.
func TestClientTLSConfig(t *testing.T) {
	dir := testDir(t)
	p := parseString(t, dir, `
environment "client" {
  certificate   = "certs/client.pem"
  private_key   = "certs/client-key.pem"
  trust         = ["certs/ca.pem"]
  tls_versions  = ["1.2"]
  cipher_suites = ["TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"]
  curves        = ["P-384"]
  alpn          = ["h2", "http/1.1"]
}
environment "system" {}
intercept "netfilter" {
  port = 15001
}
outbound "mapped" {
  port        = 15003
  endpoint    = "api.example.com:443"
  environment = "client"
}
outbound "named" {
  port        = 15004
  endpoint    = "10.0.0.1:443"
  server_name = "api.internal"
  environment = "system"
}
outbound "transparent" {
  remote_ports     = 443
  remote_addresses = "any"
  environment      = "client"
}
`)
	t.Run("environment settings", func(t *testing.T) {
		c := ruleNamed(t, p, "mapped").TLSConfig
		wantSuites := []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384}
		if got := c.CipherSuites; !slices.Equal(got, wantSuites) {
			t.Errorf("got suites %#x, want %#x", got, wantSuites)
		}
		if got, want := c.CurvePreferences, []tls.CurveID{tls.CurveP384}; !slices.Equal(got, want) {
			t.Errorf("got curves %v, want %v", got, want)
		}
		if c.MinVersion != tls.VersionTLS12 || c.MaxVersion != tls.VersionTLS12 {
			t.Errorf("got versions %#x-%#x, want TLS 1.2 only", c.MinVersion, c.MaxVersion)
		}
		if got, want := c.NextProtos, []string{"h2", "http/1.1"}; !slices.Equal(got, want) {
			t.Errorf("got ALPN %q, want %q", got, want)
		}
		if c.RootCAs == nil || !c.RootCAs.Equal(x509Pool(t, dir)) {
			t.Error("got RootCAs other than the trust pool")
		}
		if len(c.Certificates) != 1 || c.Certificates[0].Leaf == nil ||
			c.Certificates[0].Leaf.Subject.CommonName != "attlsd dev client" {
			t.Errorf("got %d certificates, want the client certificate", len(c.Certificates))
		}
		if c.ClientCAs != nil || c.ClientAuth != tls.NoClientCert || c.InsecureSkipVerify {
			t.Error("got server-side or verification-skipping settings on a client config")
		}
	})
	t.Run("defaults", func(t *testing.T) {
		c := ruleNamed(t, p, "named").TLSConfig
		if c.RootCAs != nil || len(c.Certificates) != 0 {
			t.Errorf("got RootCAs %v and %d certificates, want system roots and none",
				c.RootCAs, len(c.Certificates))
		}
		if !slices.Equal(c.CipherSuites, defaultCipherSuites) || c.CurvePreferences != nil {
			t.Errorf("got suites %#x, curves %v; want the ECDHE AEAD suites %#x and Go's curves",
				c.CipherSuites, c.CurvePreferences, defaultCipherSuites)
		}
		if c.MinVersion != tls.VersionTLS12 || c.MaxVersion != tls.VersionTLS13 {
			t.Errorf("got versions %#x-%#x, want TLS 1.2-1.3", c.MinVersion, c.MaxVersion)
		}
	})
	tests := []struct{ rule, serverName string }{
		{"mapped", "api.example.com"}, // the endpoint's host
		{"named", "api.internal"},
		{"transparent", ""}, // set per connection to the original destination
	}
	for _, tt := range tests {
		t.Run("server name/"+tt.rule, func(t *testing.T) {
			if got := ruleNamed(t, p, tt.rule).TLSConfig.ServerName; got != tt.serverName {
				t.Errorf("got ServerName %q, want %q", got, tt.serverName)
			}
		})
	}
	t.Run("own session cache per rule", func(t *testing.T) {
		a := ruleNamed(t, p, "mapped").TLSConfig.ClientSessionCache
		b := ruleNamed(t, p, "transparent").TLSConfig.ClientSessionCache
		if a == nil || b == nil || a == b {
			t.Errorf("got session caches %p and %p, want one per rule", a, b)
		}
	})
}

// TestTLSHandshake checks that a loaded configuration serves a real
// handshake to a client that trusts the development CA.
func TestTLSHandshake(t *testing.T) {
	dir := testDir(t)
	p := parseString(t, dir, `
environment "web" {
  certificate = "certs/server.pem"
  private_key = "certs/server-key.pem"
  alpn        = ["h2"]
}
inbound "api" {
  port        = 8443
  environment = "web"
  backend     = "127.0.0.1:9000"
}
`)
	server := p.Inbound[0].TLSConfig
	leaf := p.Environments[0].Pair.Leaf
	client := &tls.Config{ServerName: "localhost", NextProtos: []string{"h2"}}
	client.RootCAs = x509Pool(t, dir)
	state := handshake(t, server, client)
	if state.NegotiatedProtocol != "h2" {
		t.Errorf("got ALPN %q, want h2", state.NegotiatedProtocol)
	}
	if got := state.PeerCertificates[0]; !got.Equal(leaf) {
		t.Errorf("got peer %q, want the policy's certificate", got.Subject)
	}
}

// ruleNamed returns the policy's inbound or outbound rule called name.
func ruleNamed(t *testing.T, p *Policy, name string) *Rule {
	t.Helper()
	for _, r := range slices.Concat(p.Inbound, p.Outbound) {
		if r.Name == name {
			return r
		}
	}
	t.Fatalf("no rule %q", name)
	return nil
}

// TestDefaultCipherSuites checks that an environment without
// cipher_suites offers, inbound and outbound, exactly the ECDHE suites
// with an AEAD, and that an explicit list is kept as written.
func TestDefaultCipherSuites(t *testing.T) {
	dir := testDir(t)
	p := parseString(t, dir, `
environment "default" {
  certificate = "certs/server.pem"
  private_key = "certs/server-key.pem"
}
environment "cbc" {
  cipher_suites = ["TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA"]
}
inbound "api" {
  port        = 8443
  environment = "default"
  backend     = "127.0.0.1:9000"
}
outbound "out" {
  port        = 15003
  endpoint    = "example.com:443"
  environment = "default"
}
outbound "old" {
  port        = 15004
  endpoint    = "example.com:443"
  environment = "cbc"
}
`)
	aead := []uint16{
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	}
	tests := []struct {
		name string
		got  *tls.Config
		want []uint16
	}{
		{"inbound default", p.Inbound[0].TLSConfig, aead},
		{"outbound default", outboundNamed(t, p, "out").TLSConfig, aead},
		{"outbound explicit", outboundNamed(t, p, "old").TLSConfig,
			[]uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := slices.Sorted(slices.Values(tt.got.CipherSuites))
			if want := slices.Sorted(slices.Values(tt.want)); !slices.Equal(got, want) {
				t.Errorf("got suites %s, want %s", suiteNames(got), suiteNames(want))
			}
		})
	}

	t.Run("CBC client refused", func(t *testing.T) {
		client := &tls.Config{ServerName: "localhost", RootCAs: x509Pool(t, dir),
			MaxVersion:   tls.VersionTLS12,
			CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}}
		if err := tryHandshake(t, p.Inbound[0].TLSConfig, client); err == nil {
			t.Error("TLS 1.2 handshake offering only ECDHE-ECDSA-AES128-SHA: " +
				"got success, want a refusal")
		}
	})
}

// outboundNamed returns the policy's outbound rule called name.
func outboundNamed(t *testing.T, p *Policy, name string) *Rule {
	t.Helper()
	for _, r := range p.Outbound {
		if r.Name == name {
			return r
		}
	}
	t.Fatalf("no outbound rule %q", name)
	return nil
}

// suiteNames spells suite IDs by their IANA names.
func suiteNames(ids []uint16) []string {
	var out []string
	for _, id := range ids {
		out = append(out, tls.CipherSuiteName(id))
	}
	return out
}

// tryHandshake runs a TLS handshake over loopback TCP and returns the
// client's error.
func tryHandshake(t *testing.T, server, client *tls.Config) error {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", server)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	c, err := tls.Dial("tcp", ln.Addr().String(), client)
	if err == nil {
		c.Close()
	}
	return err
}
