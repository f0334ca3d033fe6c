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

	// CipherSuites are TLS 1.2 suite IDs in preference order; empty means
	// Go's defaults. TLS 1.3 suites are not configurable in Go.
	CipherSuites []uint16
	// Curves are key-exchange groups; empty means Go's defaults, which
	// include the post-quantum hybrid.
	Curves []tls.CurveID
	ALPN   []string

	HandshakeTimeout time.Duration
}

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

// Rule is one inbound rule: which connections it takes and what it does
// with them.
type Rule struct {
	Name     string
	Priority int

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

// Listener is one bound socket and the rules that share it, in AT-TLS
// match order: priority high to low, then name.
type Listener struct {
	// Addr is the host:port to bind; the host is empty for all addresses.
	Addr  string
	Port  uint16
	Rules []*Rule
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
	File         string // absolute path
	Environments []*Environment
	// Inbound holds every inbound rule in match order.
	Inbound []*Rule
	// Listeners are sorted by port, then address.
	Listeners []*Listener
}
