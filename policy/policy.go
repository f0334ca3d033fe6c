// Package policy owns the attlsd policy language: it parses HCL files into
// validated rules, loads the certificates they name, builds one TLS
// configuration per rule, and answers which rule a new connection maps to.
//
// A Policy is immutable once loaded; the daemon swaps whole policies.
package policy

import (
	"crypto/tls"
	"crypto/x509"
	"net/netip"
	"time"

	"github.com/hashicorp/hcl/v2"

	"github.com/attlsd/attlsd/certs"
)

// DefaultHandshakeTimeout is the AT-TLS HandshakeTimeout default.
const DefaultHandshakeTimeout = 10 * time.Second

// ClientAuth says what an inbound rule asks of the client's certificate.
type ClientAuth int

// Client authentication modes, after AT-TLS ClientAuthType.
const (
	ClientAuthNone     ClientAuth = iota // no certificate is requested
	ClientAuthPassthru                   // requested, not verified
	ClientAuthFull                       // verified against trust when given
	ClientAuthRequired                   // required and verified against trust
)

// String returns the policy spelling of the mode.
func (c ClientAuth) String() string {
	switch c {
	case ClientAuthPassthru:
		return "passthru"
	case ClientAuthFull:
		return "full"
	case ClientAuthRequired:
		return "required"
	}
	return "none"
}

// ProxyProtocol is the metadata header written to an inbound rule's backend.
type ProxyProtocol int

// Header formats. The zero value is the binary v2 header.
const (
	ProxyV2   ProxyProtocol = iota // binary PROXY v2 with TLVs
	ProxyV1                        // text PROXY v1: addresses only
	ProxyNone                      // no header at all
)

// String returns the policy spelling of the format.
func (p ProxyProtocol) String() string {
	switch p {
	case ProxyV1:
		return "v1"
	case ProxyNone:
		return "none"
	}
	return "v2"
}

// Environment is a named set of TLS settings shared by rules, the
// counterpart of an AT-TLS TTLSEnvironmentAction.
type Environment struct {
	Name string

	// CertFile and KeyFile are absolute paths; both empty when the
	// environment has no certificate of its own.
	CertFile string
	KeyFile  string
	// Pair is the loaded certificate and key; nil when CertFile is empty.
	Pair *certs.Pair

	// TrustFiles are absolute paths of CA bundles; Trust is their pool,
	// nil when TrustFiles is empty.
	TrustFiles []string
	Trust      *x509.CertPool

	MinVersion uint16 // tls.VersionTLS12 unless narrowed
	MaxVersion uint16 // tls.VersionTLS13 unless narrowed

	// CipherSuites are TLS 1.2 suite IDs as listed; empty means
	// defaultCipherSuites. TLS 1.3 suites are not configurable in Go.
	CipherSuites []uint16
	// Curves are key-exchange groups; empty means Go's defaults, which
	// include the post-quantum hybrid.
	Curves []tls.CurveID
	ALPN   []string

	HandshakeTimeout time.Duration

	// Digest sums the environment's settings and the certificates it
	// loaded: equal digests mean the same TLS behaviour.
	Digest [32]byte
	// trusted holds every certificate of Trust once, in file order.
	trusted []*x509.Certificate
}

// TrustCerts returns the certificates of the environment's trust bundles,
// in file order, each once however often the bundles repeat it.
func (e *Environment) TrustCerts() []*x509.Certificate { return e.trusted }

// Backend is where an inbound rule forwards the cleartext stream.
type Backend struct {
	Network string // "tcp" or "unix"
	Address string // host:port, or a socket path
}

// String returns the backend as written in a policy.
func (b Backend) String() string {
	if b.Network == "unix" {
		return "unix:" + b.Address
	}
	return b.Address
}

// Direction says which way a rule adds TLS.
type Direction int

// Rule directions. The zero value is inbound.
const (
	Inbound  Direction = iota // attlsd is the TLS server in front of an app
	Outbound                  // attlsd is the TLS client on an app's behalf
)

// String returns "inbound" or "outbound".
func (d Direction) String() string {
	if d == Outbound {
		return "outbound"
	}
	return "inbound"
}

// DefaultConnectTimeout bounds connecting to an inbound rule's backend or
// an outbound rule's endpoint, all of its addresses together.
const DefaultConnectTimeout = 10 * time.Second

// Rule is one inbound or outbound rule: which connections it takes and
// what it does with them.
//
// An inbound rule listens on FirstPort..LastPort, terminates TLS (unless
// TLS is false) and forwards cleartext to Backend.
//
// An outbound rule is either port-mapped or transparent. A port-mapped
// rule (Endpoint set) listens on FirstPort..LastPort for the app's
// cleartext and originates TLS to Endpoint. A transparent rule (Endpoint
// empty) listens nowhere itself: it takes connections that netfilter
// redirected to an Intercept listener, by their original destination
// (FirstRemotePort..LastRemotePort and RemoteAddresses, or AnyRemote), and
// originates TLS to that destination.
type Rule struct {
	Name      string
	Priority  int
	Direction Direction

	// FirstPort and LastPort bound the local port range; equal for one port.
	FirstPort uint16
	LastPort  uint16
	// Address is the listen address; invalid (the zero Addr) means all
	// addresses, IPv4 and IPv6.
	Address netip.Addr
	// RemoteAddresses limit the clients the rule takes; empty means any.
	RemoteAddresses []netip.Prefix

	// TLS is false for an explicit cleartext rule; Environment and
	// TLSConfig are then nil.
	TLS         bool
	Environment *Environment
	ClientAuth  ClientAuth
	// TLSConfig is the server configuration, built once at load time.
	TLSConfig *tls.Config

	Backend       Backend
	ProxyProtocol ProxyProtocol

	// Outbound rules only. TLSConfig is then a client configuration.

	// Endpoint is host:port for a port-mapped rule; the host is resolved
	// on every connection. Empty on a transparent rule.
	Endpoint string
	// ServerName is verified in the server's certificate and sent as SNI.
	// Empty only on a transparent rule without server_name: the original
	// destination's IP is then verified against the certificate's IP SANs.
	ServerName string
	// FirstRemotePort and LastRemotePort bound a transparent rule's
	// original destination port; zero on other rules.
	FirstRemotePort uint16
	LastRemotePort  uint16
	// AnyRemote is true when a transparent rule says remote_addresses =
	// "any"; RemoteAddresses is then empty.
	AnyRemote bool

	// Limits, on every rule.

	// ConnectTimeout bounds the connect to the backend (inbound) or the
	// endpoint (outbound). The loader sets DefaultConnectTimeout when the
	// policy does not say.
	ConnectTimeout time.Duration

	// MaxConnections bounds the rule's open connections; 0 is unlimited,
	// the default.
	MaxConnections int
	// IdleTimeout closes a connection when no byte has moved either way
	// for that long; 0 is none, the default, as AT-TLS keeps idle
	// connections.
	IdleTimeout time.Duration
	// HalfCloseTimeout closes a connection once one direction has ended
	// and the open one stays silent that long; each byte in the open
	// direction starts it again. The loader sets DefaultHalfCloseTimeout
	// when the policy does not say; 0, only in a Rule built in code, is
	// none.
	HalfCloseTimeout time.Duration
	// WriteTimeout closes a connection when a write to either peer has
	// made no progress for that long: the peer stopped reading while the
	// other side had more to send. The loader sets DefaultWriteTimeout
	// when the policy does not say; 0, only in a Rule built in code, is
	// none.
	WriteTimeout time.Duration

	// digest sums everything above and the environment's Digest: a rule
	// with the same name and digest in two policies behaves the same.
	digest [32]byte
	// configKey sums what shapes TLSConfig (see tlsKey): rules with equal
	// keys share one configuration, within a policy and across reloads.
	configKey [32]byte
}

// Transparent reports whether r is an outbound rule that takes redirected
// connections.
func (r *Rule) Transparent() bool {
	return r.Direction == Outbound && r.Endpoint == ""
}

// TakesOriginal reports whether the transparent rule r takes a connection
// whose original destination was dst.
func (r *Rule) TakesOriginal(dst netip.AddrPort) bool {
	if dst.Port() < r.FirstRemotePort || dst.Port() > r.LastRemotePort {
		return false
	}
	return r.AnyRemote || r.Takes(dst.Addr())
}

// Takes reports whether the rule accepts a client at addr. The port is
// already decided by the listener the client reached.
func (r *Rule) Takes(addr netip.Addr) bool {
	if len(r.RemoteAddresses) == 0 {
		return true
	}
	addr = addr.Unmap()
	for _, p := range r.RemoteAddresses {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// ListenerKind says what arrives on a listener.
type ListenerKind int

// Listener kinds. The zero value is an inbound rule's TLS (or cleartext)
// port.
const (
	ListenInbound   ListenerKind = iota // clients of inbound rules
	ListenOutbound                      // apps of port-mapped outbound rules
	ListenIntercept                     // connections redirected by netfilter
)

// String returns "inbound", "outbound" or "intercept".
func (k ListenerKind) String() string {
	switch k {
	case ListenOutbound:
		return "outbound"
	case ListenIntercept:
		return "intercept"
	}
	return "inbound"
}

// Listener is one bound socket and the rules that share it, in AT-TLS
// match order: priority high to low, then name.
type Listener struct {
	// Addr is the host:port to bind; the host is empty for all addresses.
	Addr string
	Port uint16
	Kind ListenerKind
	// Rules are the inbound or port-mapped outbound rules of the port;
	// empty on an intercept listener, whose connections are matched
	// against Policy.Transparent.
	Rules []*Rule
	// Intercept names the intercept block of an intercept listener.
	Intercept string
	// PortRange is where the port of the listener's first rule (or its
	// intercept) is written, for diagnostics about binding it.
	PortRange hcl.Range
}

// Match returns the first rule that takes a client at addr, or nil.
func (l *Listener) Match(addr netip.Addr) *Rule {
	for _, r := range l.Rules {
		if r.Takes(addr) {
			return r
		}
	}
	return nil
}

// Policy is a loaded, validated policy file.
type Policy struct {
	File string // absolute path
	// Files lists the policy file and every file it names, absolute.
	Files []string
	// Digest sums the policy text and every environment's Digest: equal
	// digests mean a reload would change nothing.
	Digest       [32]byte
	Environments []*Environment
	// Inbound holds every inbound rule in match order.
	Inbound []*Rule
	// Outbound holds every outbound rule in match order.
	Outbound []*Rule
	// Transparent holds the transparent outbound rules in match order.
	Transparent []*Rule
	// Listeners are sorted by port, then address.
	Listeners []*Listener

	// configs holds every rule's TLS configuration by its configKey.
	configs map[[32]byte]*tls.Config
}

// MatchOriginal returns the first transparent rule, in AT-TLS order, that
// takes a connection redirected from dst, or nil.
func (p *Policy) MatchOriginal(dst netip.AddrPort) *Rule {
	dst = netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())
	for _, r := range p.Transparent {
		if r.TakesOriginal(dst) {
			return r
		}
	}
	return nil
}
