package policy

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// View is a loaded policy as plain data, for people (WriteText) and for
// JSON: every default is explicit and rules are in the order they are
// matched. Keys are the policy's attribute names. It holds paths and
// certificate facts, never key material.
//
// Conventions, in JSON and text alike:
//   - a listen address that is every address (IPv4 and IPv6) is "all";
//   - remote_addresses that take every address are "any" (see Remote);
//   - a limit that is not set is null: max_connections null is
//     unlimited, idle_timeout null keeps idle connections open;
//   - cipher_suites and curves are empty when the environment leaves
//     them out, and cipher_suites_default and curves_default say so.
//     The defaults are not listed: the curves are Go's, which vary with
//     the Go release, and the suites are Go's ECDHE AEAD suites, which Go
//     orders by the CPU's AES support;
//   - cipher_suites_apply is false when tls_versions leaves out TLS 1.2:
//     cipher_suites, listed or default, then choose nothing, since TLS 1.3
//     suites are always Go's;
//   - ports are strings everywhere: "8443", or a range such as
//     "9000-9002" on a rule (a listener or an intercept has one port);
//   - durations are Go duration strings such as "10s" or "1h30m".
type View struct {
	File         string            `json:"file"`
	Environments []EnvironmentView `json:"environments"` // file order
	Inbound      []InboundView     `json:"inbound"`      // match order
	// Outbound holds port-mapped and transparent rules in match order.
	// The two kinds are matched apart, port-mapped rules by listener and
	// transparent ones by original destination, each kind in this order.
	Outbound   []OutboundView  `json:"outbound"`
	Intercepts []InterceptView `json:"intercepts"` // by port
	Listeners  []ListenerView  `json:"listeners"`  // by port, then address
}

// EnvironmentView is one environment block.
type EnvironmentView struct {
	Name string `json:"name"`
	// Certificate is nil (null) when the environment has none.
	Certificate *CertificateView `json:"certificate"`
	// Trust lists the CA bundles; empty, inbound rules verify no client
	// certificate and outbound rules verify servers against the system
	// roots.
	Trust        []string `json:"trust"`
	TLSVersions  []string `json:"tls_versions"`  // "1.2", "1.3"
	CipherSuites []string `json:"cipher_suites"` // IANA names, TLS 1.2
	// CipherSuitesDefault is true when CipherSuites is empty: the ECDHE
	// suites with AES-GCM or ChaCha20-Poly1305.
	CipherSuitesDefault bool `json:"cipher_suites_default"`
	// CipherSuitesApply is false when TLSVersions leaves out TLS 1.2, the
	// only version whose suites are configurable: the suites, listed or
	// default, are then not used.
	CipherSuitesApply bool     `json:"cipher_suites_apply"`
	Curves            []string `json:"curves"`
	// CurvesDefault is true when Curves is empty: Go chooses.
	CurvesDefault    bool     `json:"curves_default"`
	ALPN             []string `json:"alpn"`
	HandshakeTimeout string   `json:"handshake_timeout"`
}

// CertificateView is an environment's certificate: its files and the
// leaf's facts an operator checks.
type CertificateView struct {
	File       string   `json:"file"`
	PrivateKey string   `json:"private_key"` // the path only
	Subject    string   `json:"subject"`
	Issuer     string   `json:"issuer"`
	Serial     string   `json:"serial"`     // hex
	NotBefore  string   `json:"not_before"` // RFC 3339, UTC
	NotAfter   string   `json:"not_after"`  // RFC 3339, UTC
	DNSNames   []string `json:"dns_names"`
	IPs        []string `json:"ip_addresses"`
	// Intermediates are the subjects of the certificates sent after the
	// leaf, in file order.
	Intermediates []string `json:"intermediates"`
}

// InboundView is one inbound rule.
type InboundView struct {
	Name     string `json:"name"`
	Priority int    `json:"priority"`
	Port     string `json:"port"`    // "8443" or a range, "9000-9002"
	Address  string `json:"address"` // an IP or "all"
	// RemoteAddresses is Any when the rule takes every client.
	RemoteAddresses Remote `json:"remote_addresses"`
	TLS             bool   `json:"tls"`
	// Environment is nil (null) on a cleartext rule.
	Environment   *string `json:"environment"`
	ClientAuth    string  `json:"client_auth"`
	Backend       string  `json:"backend"` // host:port or "unix:/path"
	ProxyProtocol string  `json:"proxy_protocol"`
	LimitsView
}

// Outbound rule modes, as OutboundView.Mode spells them.
const (
	ModePortMapped  = "port-mapped"
	ModeTransparent = "transparent"
)

// OutboundView is one outbound rule. Port, Address and Endpoint are set
// on a port-mapped rule only, RemotePorts and RemoteAddresses on a
// transparent one only.
type OutboundView struct {
	Name            string  `json:"name"`
	Priority        int     `json:"priority"`
	Mode            string  `json:"mode"` // ModePortMapped or ModeTransparent
	Port            string  `json:"port,omitempty"`
	Address         string  `json:"address,omitempty"`
	Endpoint        string  `json:"endpoint,omitempty"`
	RemotePorts     string  `json:"remote_ports,omitempty"`
	RemoteAddresses *Remote `json:"remote_addresses,omitempty"`
	// ServerName is verified in the server's certificate. It is nil
	// (null) on a transparent rule without server_name, which verifies
	// the original destination's IP against the certificate's IP SANs.
	ServerName  *string `json:"server_name"`
	Environment string  `json:"environment"`
	LimitsView
}

// LimitsView is a rule's connection limits.
type LimitsView struct {
	// ConnectTimeout bounds the connect to the backend (inbound) or the
	// endpoint (outbound).
	ConnectTimeout   string  `json:"connect_timeout"`
	MaxConnections   *int    `json:"max_connections"` // nil (null): unlimited
	IdleTimeout      *string `json:"idle_timeout"`    // nil (null): none
	HalfCloseTimeout string  `json:"half_close_timeout"`
	WriteTimeout     string  `json:"write_timeout"`
}

// InterceptView is one intercept block.
type InterceptView struct {
	Name    string `json:"name"`
	Address string `json:"address"` // an IP or "all"
	Port    string `json:"port"`    // one port, "15001"
}

// ListenerView is one socket attlsd binds.
type ListenerView struct {
	Address   string `json:"address"`             // an IP or "all"
	Port      string `json:"port"`                // one port, "8443"
	Kind      string `json:"kind"`                // inbound, outbound or intercept
	Intercept string `json:"intercept,omitempty"` // intercept listeners only
	// Rules names the rules matched on the listener, in match order; on
	// an intercept listener, every transparent rule.
	Rules []string `json:"rules"`
}

// Remote is the addresses a rule takes: every address when Any is true,
// else the CIDR prefixes. In JSON it is the string "any" or a list.
type Remote struct {
	Any      bool
	Prefixes []string
}

// String returns "any" or the prefixes separated by ", ".
func (r Remote) String() string {
	if r.Any {
		return "any"
	}
	return strings.Join(r.Prefixes, ", ")
}

// MarshalJSON writes "any" or the list of prefixes.
func (r Remote) MarshalJSON() ([]byte, error) {
	if r.Any {
		return []byte(`"any"`), nil
	}
	return json.Marshal(orEmpty(r.Prefixes))
}

// UnmarshalJSON reads "any" or a list of prefixes.
func (r *Remote) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		if s != "any" {
			return fmt.Errorf("remote addresses: %q is neither \"any\" nor a list", s)
		}
		*r = Remote{Any: true}
		return nil
	}
	*r = Remote{}
	return json.Unmarshal(b, &r.Prefixes)
}

// View returns p as plain data, every default explicit.
func (p *Policy) View() View {
	v := View{
		File:         p.File,
		Environments: []EnvironmentView{},
		Inbound:      []InboundView{},
		Outbound:     []OutboundView{},
		Intercepts:   []InterceptView{},
		Listeners:    []ListenerView{},
	}
	for _, e := range p.Environments {
		v.Environments = append(v.Environments, environmentView(e))
	}
	for _, r := range p.Inbound {
		v.Inbound = append(v.Inbound, inboundView(r))
	}
	for _, r := range p.Outbound {
		v.Outbound = append(v.Outbound, outboundView(r))
	}
	for _, l := range p.Listeners {
		lv := listenerView(l, p.Transparent)
		v.Listeners = append(v.Listeners, lv)
		if l.Kind == ListenIntercept {
			v.Intercepts = append(v.Intercepts,
				InterceptView{Name: l.Intercept, Address: lv.Address, Port: lv.Port})
		}
	}
	return v
}

// environmentView describes e.
func environmentView(e *Environment) EnvironmentView {
	v := EnvironmentView{
		Name:                e.Name,
		Trust:               orEmpty(e.TrustFiles),
		TLSVersions:         []string{},
		CipherSuites:        []string{},
		CipherSuitesDefault: len(e.CipherSuites) == 0,
		CipherSuitesApply:   e.MinVersion <= tls.VersionTLS12,
		Curves:              []string{},
		CurvesDefault:       len(e.Curves) == 0,
		ALPN:                orEmpty(e.ALPN),
		HandshakeTimeout:    formatDuration(e.HandshakeTimeout),
	}
	if e.Pair != nil {
		v.Certificate = certificateView(e)
	}
	for _, name := range []string{"1.2", "1.3"} {
		if id := tlsVersionNames[name]; id >= e.MinVersion && id <= e.MaxVersion {
			v.TLSVersions = append(v.TLSVersions, name)
		}
	}
	for _, id := range e.CipherSuites {
		v.CipherSuites = append(v.CipherSuites, tls.CipherSuiteName(id))
	}
	for _, id := range e.Curves {
		v.Curves = append(v.Curves, curveName(id))
	}
	return v
}

// certificateView describes e's certificate, which must be loaded.
func certificateView(e *Environment) *CertificateView {
	leaf := e.Pair.Leaf
	v := &CertificateView{
		File:          e.CertFile,
		PrivateKey:    e.KeyFile,
		Subject:       leaf.Subject.String(),
		Issuer:        leaf.Issuer.String(),
		Serial:        fmt.Sprintf("%X", leaf.SerialNumber),
		NotBefore:     leaf.NotBefore.UTC().Format(time.RFC3339),
		NotAfter:      leaf.NotAfter.UTC().Format(time.RFC3339),
		DNSNames:      orEmpty(leaf.DNSNames),
		IPs:           []string{},
		Intermediates: []string{},
	}
	for _, ip := range leaf.IPAddresses {
		v.IPs = append(v.IPs, ip.String())
	}
	for _, der := range e.Pair.Cert.Certificate[1:] {
		if c, err := x509.ParseCertificate(der); err == nil {
			v.Intermediates = append(v.Intermediates, c.Subject.String())
		}
	}
	return v
}

// curveName returns the policy spelling of a key-exchange group.
func curveName(id tls.CurveID) string {
	switch id {
	case tls.CurveP256:
		return "P-256"
	case tls.CurveP384:
		return "P-384"
	case tls.CurveP521:
		return "P-521"
	}
	return id.String()
}

// inboundView describes inbound rule r.
func inboundView(r *Rule) InboundView {
	v := InboundView{
		Name:            r.Name,
		Priority:        r.Priority,
		Port:            portRangeString(r.FirstPort, r.LastPort),
		Address:         addressString(r.Address.String(), r.Address.IsValid()),
		RemoteAddresses: remote(r),
		TLS:             r.TLS,
		ClientAuth:      r.ClientAuth.String(),
		Backend:         r.Backend.String(),
		ProxyProtocol:   r.ProxyProtocol.String(),
		LimitsView:      limitsView(r),
	}
	if r.Environment != nil {
		name := r.Environment.Name
		v.Environment = &name
	}
	return v
}

// outboundView describes outbound rule r, port-mapped or transparent.
func outboundView(r *Rule) OutboundView {
	v := OutboundView{
		Name:        r.Name,
		Priority:    r.Priority,
		Mode:        ModePortMapped,
		Environment: r.Environment.Name,
		LimitsView:  limitsView(r),
	}
	if name := r.ServerName; name != "" {
		v.ServerName = &name
	}
	if r.Transparent() {
		rem := remote(r)
		v.Mode = ModeTransparent
		v.RemotePorts = portRangeString(r.FirstRemotePort, r.LastRemotePort)
		v.RemoteAddresses = &rem
		return v
	}
	v.Port = portRangeString(r.FirstPort, r.LastPort)
	v.Address = addressString(r.Address.String(), r.Address.IsValid())
	v.Endpoint = r.Endpoint
	return v
}

// remote returns the addresses r takes: inbound, its clients; on a
// transparent rule, its original destinations.
func remote(r *Rule) Remote {
	if r.AnyRemote || len(r.RemoteAddresses) == 0 {
		return Remote{Any: true}
	}
	v := Remote{Prefixes: []string{}}
	for _, p := range r.RemoteAddresses {
		v.Prefixes = append(v.Prefixes, prefixString(p.String(), p.IsSingleIP()))
	}
	return v
}

// prefixString drops the length of a single-address prefix, as the
// policy lets it be written: "192.0.2.7", not "192.0.2.7/32".
func prefixString(p string, single bool) string {
	if single {
		return p[:strings.LastIndexByte(p, '/')]
	}
	return p
}

// limitsView describes r's limits.
func limitsView(r *Rule) LimitsView {
	v := LimitsView{ConnectTimeout: formatDuration(r.ConnectTimeout),
		HalfCloseTimeout: formatDuration(r.HalfCloseTimeout),
		WriteTimeout:     formatDuration(r.WriteTimeout)}
	if r.MaxConnections > 0 {
		n := r.MaxConnections
		v.MaxConnections = &n
	}
	if r.IdleTimeout > 0 {
		s := formatDuration(r.IdleTimeout)
		v.IdleTimeout = &s
	}
	return v
}

// listenerView describes l; transparent are the rules matched on an
// intercept listener.
func listenerView(l *Listener, transparent []*Rule) ListenerView {
	host, _, _ := net.SplitHostPort(l.Addr)
	v := ListenerView{
		Address:   addressString(host, host != ""),
		Port:      portRangeString(l.Port, l.Port),
		Kind:      l.Kind.String(),
		Intercept: l.Intercept,
		Rules:     []string{},
	}
	rules := l.Rules
	if l.Kind == ListenIntercept {
		rules = transparent
	}
	for _, r := range rules {
		v.Rules = append(v.Rules, r.Name)
	}
	return v
}

// addressString returns addr, or "all" when it is not set.
func addressString(addr string, set bool) string {
	if !set {
		return "all"
	}
	return addr
}

// portRangeString writes a port as "8443" and a range as "9000-9002".
func portRangeString(first, last uint16) string {
	if first == last {
		return strconv.Itoa(int(first))
	}
	return fmt.Sprintf("%d-%d", first, last)
}

// formatDuration writes d as Go does, without the zero units Go adds
// after minutes and hours: "1m" rather than "1m0s", "1h30m" rather than
// "1h30m0s". time.ParseDuration reads both.
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// orEmpty returns a copy of s that is never nil, so that JSON shows []
// rather than null and a View shares no memory with its Policy.
func orEmpty(s []string) []string {
	return append([]string{}, s...)
}
