package proxy

import (
	"crypto/tls"
	"fmt"
	"net"

	proxyproto "github.com/pires/go-proxyproto"
	"github.com/pires/go-proxyproto/tlvparse"

	"github.com/attlsd/attlsd/policy"
)

// TLVRule carries the matched rule's name. 0xE1 lies in the range that
// the PROXY protocol leaves to applications (0xE0-0xEF, spec 2.2.7).
const TLVRule proxyproto.PP2Type = 0xE1

// Meta is what attlsd tells a backend about one connection. It never holds
// anything taken from a client certificate beyond whether one was verified.
type Meta struct {
	Client net.Addr // the client's real address
	Local  net.Addr // the address the client connected to
	ConnID string
	Rule   string

	// TLS is nil on a cleartext rule.
	TLS *tls.ConnectionState
	// SigScheme is the server's signature scheme, "" when not known.
	SigScheme string
	// CertVerified is true when the client presented a certificate and it
	// was verified against the rule's trust.
	CertVerified bool
}

// header returns the bytes to write before the first byte of application
// data, or nil for policy.ProxyNone.
func header(format policy.ProxyProtocol, m *Meta) ([]byte, error) {
	switch format {
	case policy.ProxyNone:
		return nil, nil
	case policy.ProxyV1:
		return proxyproto.HeaderProxyFromAddrs(1, m.Client, m.Local).Format()
	}
	h := proxyproto.HeaderProxyFromAddrs(2, m.Client, m.Local)
	if err := h.SetTLVs(tlvs(m)); err != nil {
		return nil, fmt.Errorf("build proxy header: %w", err)
	}
	return h.Format()
}

// tlvs lists the v2 TLVs in type order: ALPN, AUTHORITY, UNIQUE_ID, SSL,
// then the rule.
func tlvs(m *Meta) []proxyproto.TLV {
	var out []proxyproto.TLV
	add := func(t proxyproto.PP2Type, v string) {
		if v != "" {
			out = append(out, proxyproto.TLV{Type: t, Value: []byte(v)})
		}
	}
	if m.TLS != nil {
		add(proxyproto.PP2_TYPE_ALPN, m.TLS.NegotiatedProtocol)
		add(proxyproto.PP2_TYPE_AUTHORITY, m.TLS.ServerName)
	}
	add(proxyproto.PP2_TYPE_UNIQUE_ID, m.ConnID)
	if m.TLS != nil {
		out = append(out, sslTLV(m))
	}
	add(TLVRule, m.Rule)
	return out
}

// sslTLV builds PP2_TYPE_SSL (spec 2.2.6). The client field says TLS was
// used and, when a certificate was verified, that one was presented; the
// verify field is 0 only then. No sub-TLV carries certificate data
// (PP2_SUBTYPE_SSL_CN and _CLIENT_CERT are never written).
func sslTLV(m *Meta) proxyproto.TLV {
	s := tlvparse.PP2SSL{Client: tlvparse.PP2_BITFIELD_CLIENT_SSL, Verify: 1}
	if m.CertVerified {
		s.Client |= tlvparse.PP2_BITFIELD_CLIENT_CERT_CONN |
			tlvparse.PP2_BITFIELD_CLIENT_CERT_SESS
		s.Verify = 0
	}
	sub := func(t proxyproto.PP2Type, v string) {
		if v != "" {
			s.TLV = append(s.TLV, proxyproto.TLV{Type: t, Value: []byte(v)})
		}
	}
	cs := m.TLS
	sub(proxyproto.PP2_SUBTYPE_SSL_VERSION, versionName(cs.Version))
	sub(proxyproto.PP2_SUBTYPE_SSL_CIPHER, tls.CipherSuiteName(cs.CipherSuite))
	sub(proxyproto.PP2_SUBTYPE_SSL_GROUP, groupName(cs.CurveID))
	sub(proxyproto.PP2_SUBTYPE_SSL_SIG_SCHEME, m.SigScheme)
	t, _ := s.Marshal() // sub-TLVs are short strings; Marshal cannot fail
	return t
}

// versionName spells versions as OpenSSL and HAProxy do in this TLV.
func versionName(v uint16) string {
	switch v {
	case tls.VersionTLS12:
		return "TLSv1.2"
	case tls.VersionTLS13:
		return "TLSv1.3"
	}
	return ""
}

// groupName returns the IANA TLS Supported Groups name, or "" when no
// (EC)DHE group was used.
func groupName(id tls.CurveID) string {
	switch id {
	case 0:
		return ""
	case tls.CurveP256:
		return "secp256r1"
	case tls.CurveP384:
		return "secp384r1"
	case tls.CurveP521:
		return "secp521r1"
	case tls.X25519:
		return "x25519"
	}
	return id.String() // X25519MLKEM768 and others already use IANA names
}
