package proxy

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	proxyproto "github.com/pires/go-proxyproto"
	"github.com/pires/go-proxyproto/tlvparse"

	"github.com/attlsd/attlsd/policy"
)

// fuzzMeta is the fuzzed input of FuzzHeader, in f.Fuzz's argument order.
type fuzzMeta struct {
	v1                       bool
	src6, dst6               bool
	src, dst                 []byte
	srcPort, dstPort         uint16
	withTLS                  bool
	sni, alpn, id, rule, sig string
	version, cipher, curve   uint16
	verified                 bool
}

// meta builds the Meta that the header writer gets. Addresses take 4 or
// 16 bytes of the fuzzed ones, zero-padded.
func (in fuzzMeta) meta() *Meta {
	ip := func(v6 bool, b []byte) net.IP {
		n := net.IPv4len
		if v6 {
			n = net.IPv6len
		}
		out := make(net.IP, n)
		copy(out, b)
		return out
	}
	m := &Meta{
		Client: &net.TCPAddr{IP: ip(in.src6, in.src), Port: int(in.srcPort)},
		Local:  &net.TCPAddr{IP: ip(in.dst6, in.dst), Port: int(in.dstPort)},
		ConnID: in.id, Rule: in.rule, SigScheme: in.sig, CertVerified: in.verified,
	}
	if in.withTLS {
		m.TLS = &tls.ConnectionState{Version: in.version, CipherSuite: in.cipher,
			CurveID: tls.CurveID(in.curve), ServerName: in.sni, NegotiatedProtocol: in.alpn}
	}
	return m
}

// FuzzHeader builds PROXY headers from fuzzed connection facts and reads
// each back with go-proxyproto, the reader many backends use. Within
// Meta's limits every header must parse whole, every address, TLV and
// SSL sub-TLV must come back exactly, in type order, with nothing else,
// and never a client certificate or its CN. Beyond them (a field longer
// than the PROXY protocol or a reader allows) the writer must refuse
// instead of writing a header that readers reject. A server name that is
// not a host name is left out.
func FuzzHeader(f *testing.F) {
	for _, in := range headerSeeds(f) {
		f.Add(in.v1, in.src6, in.dst6, in.src, in.dst, in.srcPort, in.dstPort,
			in.withTLS, in.sni, in.alpn, in.id, in.rule, in.sig,
			in.version, in.cipher, in.curve, in.verified)
	}
	f.Fuzz(func(t *testing.T, v1, src6, dst6 bool, src, dst []byte, srcPort, dstPort uint16,
		withTLS bool, sni, alpn, id, rule, sig string, version, cipher, curve uint16,
		verified bool) {
		in := fuzzMeta{v1, src6, dst6, src, dst, srcPort, dstPort, withTLS,
			sni, alpn, id, rule, sig, version, cipher, curve, verified}
		m := in.meta()
		format := policy.ProxyV2
		if v1 {
			format = policy.ProxyV1
		}
		raw, err := header(format, m)
		if over := overLimit(m); over != "" && !v1 {
			if err == nil {
				t.Fatalf("%s: got a %d-byte header, want an error", over, len(raw))
			}
			return
		}
		if err != nil {
			t.Fatalf("header: %v", err)
		}
		h := readBack(t, raw)
		checkAddrs(t, h, m)
		if !v1 {
			checkTLVs(t, h, m)
		}
	})
}

// overLimit says which field of m exceeds what the header may carry, or
// "" when all fit: the PROXY protocol caps UNIQUE_ID at 128 bytes (spec
// 2.2.5) and ALPN names are at most 255 (RFC 7301); rule names and
// signature scheme names are held to 255 as well, which keeps the whole
// header far below the 4096 bytes go-proxyproto and nginx accept.
func overLimit(m *Meta) string {
	switch {
	case len(m.ConnID) > 128:
		return "connection id over 128 bytes"
	case len(m.Rule) > 255:
		return "rule name over 255 bytes"
	case len(m.SigScheme) > 255 && m.TLS != nil:
		return "signature scheme over 255 bytes"
	case m.TLS != nil && len(m.TLS.NegotiatedProtocol) > 255:
		return "ALPN protocol over 255 bytes"
	}
	return ""
}

// readBack parses raw with go-proxyproto and checks that it is one whole
// header: nothing left over, nothing missing.
func readBack(t *testing.T, raw []byte) *proxyproto.Header {
	t.Helper()
	r := bufio.NewReader(bytes.NewReader(raw))
	h, err := proxyproto.Read(r)
	if err != nil {
		t.Fatalf("read back %d bytes: %v\n%s", len(raw), err, hex.Dump(raw))
	}
	if n := r.Buffered(); n != 0 {
		t.Fatalf("read back: %d bytes left after the header", n)
	}
	return h
}

// checkAddrs checks the command, family, addresses and ports.
func checkAddrs(t *testing.T, h *proxyproto.Header, m *Meta) {
	t.Helper()
	c, l := m.Client.(*net.TCPAddr), m.Local.(*net.TCPAddr)
	want := proxyproto.TCPv6
	if c.IP.To4() != nil && l.IP.To4() != nil {
		want = proxyproto.TCPv4
	}
	if h.Command != proxyproto.PROXY || h.TransportProtocol != want {
		t.Fatalf("got command %v family %v, want PROXY %v", h.Command, h.TransportProtocol, want)
	}
	gc, gl := h.SourceAddr.(*net.TCPAddr), h.DestinationAddr.(*net.TCPAddr)
	if !gc.IP.Equal(c.IP) || gc.Port != c.Port || !gl.IP.Equal(l.IP) || gl.Port != l.Port {
		t.Fatalf("addresses: got %v -> %v, want %v -> %v", gc, gl, c, l)
	}
}

// wantTLVs is what the v2 header must carry for m, in type order, with
// the SSL TLV left out (checkSSL reads it).
func wantTLVs(m *Meta) []proxyproto.TLV {
	var out []proxyproto.TLV
	add := func(typ proxyproto.PP2Type, v string) {
		if v != "" {
			out = append(out, proxyproto.TLV{Type: typ, Value: []byte(v)})
		}
	}
	if m.TLS != nil {
		add(proxyproto.PP2_TYPE_ALPN, m.TLS.NegotiatedProtocol)
		if hostNameOK(m.TLS.ServerName) {
			add(proxyproto.PP2_TYPE_AUTHORITY, m.TLS.ServerName)
		}
	}
	add(proxyproto.PP2_TYPE_UNIQUE_ID, m.ConnID)
	if m.TLS != nil {
		out = append(out, proxyproto.TLV{Type: proxyproto.PP2_TYPE_SSL})
	}
	add(TLVRule, m.Rule)
	return out
}

// hostNameOK is the test's own rule for a server name that may be passed
// on: 1 to 253 bytes of letters, digits, '-', '_' and '.' (RFC 6066
// section 3: an ASCII DNS host name).
func hostNameOK(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	const allowed = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_."
	return strings.Trim(s, allowed) == ""
}

// checkTLVs checks every TLV of a v2 header against m.
func checkTLVs(t *testing.T, h *proxyproto.Header, m *Meta) {
	t.Helper()
	got, err := h.TLVs()
	if err != nil {
		t.Fatalf("TLVs: %v", err)
	}
	want := wantTLVs(m)
	if len(got) != len(want) {
		t.Fatalf("TLV types: got %v, want %v", tlvTypes(got), tlvTypes(want))
	}
	for i, w := range want {
		g := got[i]
		if g.Type != w.Type {
			t.Fatalf("TLV types: got %v, want %v", tlvTypes(got), tlvTypes(want))
		}
		if g.Type == proxyproto.PP2_TYPE_SSL {
			checkSSL(t, g, m)
		} else if !bytes.Equal(g.Value, w.Value) {
			t.Fatalf("TLV %#x: got %q, want %q", g.Type, g.Value, w.Value)
		}
	}
}

func tlvTypes(tlvs []proxyproto.TLV) []proxyproto.PP2Type {
	var out []proxyproto.PP2Type
	for _, v := range tlvs {
		out = append(out, v.Type)
	}
	return out
}

// checkSSL checks the SSL TLV: the flags, and exactly the version,
// cipher, group and signature scheme sub-TLVs, in that order, with the
// IANA and OpenSSL spellings.
func checkSSL(t *testing.T, v proxyproto.TLV, m *Meta) {
	t.Helper()
	s, err := tlvparse.SSL(v)
	if err != nil {
		t.Fatalf("SSL TLV: %v", err)
	}
	client, verify := tlvparse.PP2_BITFIELD_CLIENT_SSL, uint32(1)
	if m.CertVerified {
		client |= tlvparse.PP2_BITFIELD_CLIENT_CERT_CONN | tlvparse.PP2_BITFIELD_CLIENT_CERT_SESS
		verify = 0
	}
	if s.Client != client || s.Verify != verify {
		t.Fatalf("SSL flags: got client %#x verify %d, want %#x %d",
			s.Client, s.Verify, client, verify)
	}
	var want []proxyproto.TLV
	sub := func(typ proxyproto.PP2Type, v string) {
		if v != "" {
			want = append(want, proxyproto.TLV{Type: typ, Value: []byte(v)})
		}
	}
	cs := m.TLS
	version, ok := versionNames[cs.Version]
	if !ok {
		version = fmt.Sprintf("0x%04X", cs.Version)
	}
	sub(proxyproto.PP2_SUBTYPE_SSL_VERSION, version)
	sub(proxyproto.PP2_SUBTYPE_SSL_CIPHER, tls.CipherSuiteName(cs.CipherSuite))
	sub(proxyproto.PP2_SUBTYPE_SSL_GROUP, ianaGroup(cs.CurveID))
	sub(proxyproto.PP2_SUBTYPE_SSL_SIG_SCHEME, m.SigScheme)
	for _, g := range s.TLV {
		if g.Type == proxyproto.PP2_SUBTYPE_SSL_CN ||
			g.Type == proxyproto.PP2_SUBTYPE_SSL_CLIENT_CERT {
			t.Fatalf("SSL sub-TLV %#x carries client certificate data %q", g.Type, g.Value)
		}
	}
	if !slices.EqualFunc(s.TLV, want, func(a, b proxyproto.TLV) bool {
		return a.Type == b.Type && bytes.Equal(a.Value, b.Value)
	}) {
		t.Fatalf("SSL sub-TLVs: got %q, want %q", s.TLV, want)
	}
}

// versionNames spell TLS versions as OpenSSL does in the SSL TLV.
var versionNames = map[uint16]string{tls.VersionTLS12: "TLSv1.2", tls.VersionTLS13: "TLSv1.3"}

// ianaGroup spells a TLS Supported Group as the IANA registry does.
func ianaGroup(id tls.CurveID) string {
	names := map[tls.CurveID]string{tls.CurveP256: "secp256r1", tls.CurveP384: "secp384r1",
		tls.CurveP521: "secp521r1", tls.X25519: "x25519"}
	if id == 0 {
		return ""
	}
	if n, ok := names[id]; ok {
		return n
	}
	return id.String()
}

// headerSeeds are sampleMeta and the connections the golden headers in
// testdata hold, decoded back into fuzz inputs.
func headerSeeds(f *testing.F) []fuzzMeta {
	s := sampleMeta()
	seeds := []fuzzMeta{{
		src: s.Client.(*net.TCPAddr).IP.To4(), dst: s.Local.(*net.TCPAddr).IP.To4(),
		srcPort: 50123, dstPort: 8443, withTLS: true, sni: s.TLS.ServerName,
		alpn: s.TLS.NegotiatedProtocol, id: s.ConnID, rule: s.Rule, sig: s.SigScheme,
		version: s.TLS.Version, cipher: s.TLS.CipherSuite, curve: uint16(s.TLS.CurveID),
		verified: true}}
	files, _ := filepath.Glob("testdata/*.golden")
	for _, file := range files {
		seeds = append(seeds, goldenSeed(f, file))
	}
	return seeds
}

// goldenSeed reads a golden header (a hex dump) back into a fuzz input.
func goldenSeed(f *testing.F, file string) fuzzMeta {
	b, err := os.ReadFile(file)
	if err != nil {
		f.Fatal(err)
	}
	raw := undump(string(b))
	h, err := proxyproto.Read(bufio.NewReader(bytes.NewReader(raw)))
	if err != nil {
		f.Fatalf("%s: %v", file, err)
	}
	c, l := h.SourceAddr.(*net.TCPAddr), h.DestinationAddr.(*net.TCPAddr)
	in := fuzzMeta{v1: h.Version == 1, src6: c.IP.To4() == nil, dst6: l.IP.To4() == nil,
		src: c.IP, dst: l.IP, srcPort: uint16(c.Port), dstPort: uint16(l.Port)}
	if in.v1 {
		return in
	}
	tlvs, err := h.TLVs()
	if err != nil {
		f.Fatalf("%s: %v", file, err)
	}
	in.fromTLVs(tlvs)
	return in
}

// fromTLVs fills the fields a v2 header's TLVs carry.
func (in *fuzzMeta) fromTLVs(tlvs []proxyproto.TLV) {
	for _, v := range tlvs {
		switch v.Type {
		case proxyproto.PP2_TYPE_ALPN:
			in.alpn = string(v.Value)
		case proxyproto.PP2_TYPE_AUTHORITY:
			in.sni = string(v.Value)
		case proxyproto.PP2_TYPE_UNIQUE_ID:
			in.id = string(v.Value)
		case TLVRule:
			in.rule = string(v.Value)
		}
	}
	s, ok := tlvparse.FindSSL(tlvs)
	if !ok {
		return
	}
	in.withTLS, in.verified = true, s.Verified()
	version, _ := s.SSLVersion()
	for id, name := range versionNames {
		if name == version {
			in.version = id
		}
	}
	name, _ := s.SSLCipher()
	for _, cs := range tls.CipherSuites() {
		if cs.Name == name {
			in.cipher = cs.ID
		}
	}
	group, _ := s.SSLGroup()
	for _, id := range []tls.CurveID{tls.CurveP256, tls.CurveP384, tls.CurveP521, tls.X25519,
		tls.X25519MLKEM768} {
		if ianaGroup(id) == group {
			in.curve = uint16(id)
		}
	}
	in.sig, _ = s.SSLSigScheme()
}

// undump reverses hex.Dump.
func undump(dump string) []byte {
	var out []byte
	for _, line := range strings.Split(dump, "\n") {
		if len(line) < 10 {
			continue
		}
		body, _, _ := strings.Cut(line[10:], "|")
		b, _ := hex.DecodeString(strings.Join(strings.Fields(body), ""))
		out = append(out, b...)
	}
	return out
}
