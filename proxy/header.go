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
// data, or nil for policy.ProxyNone. It refuses a Meta whose fields do
// not fit (see checkLimits) rather than write a header readers reject.
func header(format policy.ProxyProtocol, m *Meta) ([]byte, error) {
	switch format {
	case policy.ProxyNone:
		return nil, nil
	case policy.ProxyV1:
		return proxyproto.HeaderProxyFromAddrs(1, m.Client, m.Local).Format()
	}
	if err := checkLimits(m); err != nil {
		return nil, fmt.Errorf("build proxy header: %w", err)
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
		if isHostName(m.TLS.ServerName) {
			add(proxyproto.PP2_TYPE_AUTHORITY, m.TLS.ServerName)
		}
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
	sub(proxyproto.PP2_SUBTYPE_SSL_VERSION, sslVersion(cs.Version))
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

// sslVersion is versionName for the SSL TLV, which must name a version
// whenever its client flag says TLS was used (spec 2.2.6; go-proxyproto
// rejects the TLV otherwise): a version attlsd never negotiates is
// spelled as its code, "0x0301".
func sslVersion(v uint16) string {
	if name := versionName(v); name != "" {
		return name
	}
	return fmt.Sprintf("0x%04X", v)
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

// Limits on what one v2 header carries. UNIQUE_ID is at most 128 bytes
// (spec 2.2.5) and an ALPN protocol name at most 255 (RFC 7301 section
// 3.1); rule names are held to 255 by the policy, and signature scheme
// names are short. Together they keep a header far below the 4096 bytes
// that go-proxyproto (MaxV2HeaderSize) and nginx read at most.
const (
	maxConnID = 128
	maxName   = 255
)

// checkLimits reports the first field of m too long for the header.
func checkLimits(m *Meta) error {
	switch {
	case len(m.ConnID) > maxConnID:
		return fmt.Errorf("connection id of %d bytes exceeds %d", len(m.ConnID), maxConnID)
	case len(m.Rule) > maxName:
		return fmt.Errorf("rule name of %d bytes exceeds %d", len(m.Rule), maxName)
	case m.TLS != nil && len(m.TLS.NegotiatedProtocol) > maxName:
		return fmt.Errorf("ALPN protocol of %d bytes exceeds %d",
			len(m.TLS.NegotiatedProtocol), maxName)
	case m.TLS != nil && len(m.SigScheme) > maxName:
		return fmt.Errorf("signature scheme of %d bytes exceeds %d", len(m.SigScheme), maxName)
	}
	return nil
}

// isHostName reports whether the client's server name may go into the
// AUTHORITY TLV: RFC 6066 section 3 makes it an ASCII DNS host name, at
// most 253 bytes. crypto/tls takes any bytes up to the size of the
// ClientHello, so a hostile client could otherwise push binary, line
// breaks or 64 KiB into the backend's header (and its logs); such a name
// is left out, as no name is.
func isHostName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c == '-' || c == '_' || c == '.'
		if !ok {
			return false
		}
	}
	return true
}
