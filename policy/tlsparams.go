package policy

import (
	"crypto/tls"
	"slices"
	"strconv"
	"strings"

	"github.com/hashicorp/hcl/v2"
)

// tlsVersionNames maps the policy spelling of a TLS version to Go's.
var tlsVersionNames = map[string]uint16{
	"1.2": tls.VersionTLS12,
	"1.3": tls.VersionTLS13,
}

// curveNames maps the policy spelling of a key-exchange group to Go's.
var curveNames = map[string]tls.CurveID{
	"X25519MLKEM768": tls.X25519MLKEM768,
	"X25519":         tls.X25519,
	"P-256":          tls.CurveP256,
	"P-384":          tls.CurveP384,
	"P-521":          tls.CurveP521,
	"secp256r1":      tls.CurveP256,
	"secp384r1":      tls.CurveP384,
	"secp521r1":      tls.CurveP521,
}

// tlsVersions narrows the environment's version range. The list must name
// at least one version, and only versions at or above the 1.2 floor.
func (d *decoder) tlsVersions(env *Environment, attr *hcl.Attribute) {
	if attr == nil {
		return
	}
	items, ok := d.list(attr)
	if ok && len(items) == 0 && isEmptyList(attr) {
		d.errorf(attr.Expr.Range(), "Invalid tls_versions",
			"tls_versions is empty; omit it for TLS 1.2 and 1.3")
		return
	}
	var versions []uint16
	for _, it := range d.unique(attr, items) {
		if v, ok := d.tlsVersion(it); ok {
			versions = append(versions, v)
		}
	}
	if len(versions) > 0 {
		env.MinVersion, env.MaxVersion = slices.Min(versions), slices.Max(versions)
	}
}

// tlsVersion decodes one entry of tls_versions.
func (d *decoder) tlsVersion(it item) (uint16, bool) {
	if v, ok := tlsVersionNames[it.s]; ok {
		return v, true
	}
	switch it.s {
	case "1.0", "1.1":
		d.errorf(it.rng, "Invalid tls_versions",
			"TLS %s is below attlsd's floor of TLS 1.2", it.s)
	default:
		d.errorf(it.rng, "Invalid tls_versions",
			"unknown TLS version %q; use \"1.2\" or \"1.3\"", it.s)
	}
	return 0, false
}

// cipherSuites decodes TLS 1.2 cipher suites in preference order.
func (d *decoder) cipherSuites(attr *hcl.Attribute, minVersion uint16) []uint16 {
	if attr == nil {
		return nil
	}
	items, _ := d.list(attr)
	var ids []uint16
	for _, it := range d.unique(attr, items) {
		if id, ok := d.cipherSuite(it); ok {
			ids = append(ids, id)
		}
	}
	if len(ids) > 0 && minVersion == tls.VersionTLS13 {
		d.warnf(attr.Expr.Range(), "Unused cipher_suites",
			"cipher_suites apply to TLS 1.2 only, which tls_versions leaves out")
	}
	return ids
}

// cipherSuite decodes one suite given by IANA name or 4-digit hex code,
// refusing insecure suites and TLS 1.3 suites with the reason.
func (d *decoder) cipherSuite(it item) (uint16, bool) {
	if s := findSuite(tls.CipherSuites(), it.s); s != nil {
		if !slices.Contains(s.SupportedVersions, tls.VersionTLS12) {
			d.errorf(it.rng, "Invalid cipher_suites", "%s is a TLS 1.3 suite; Go "+
				"does not let TLS 1.3 suites be configured, so list TLS 1.2 suites only",
				s.Name)
			return 0, false
		}
		return s.ID, true
	}
	if s := findSuite(tls.InsecureCipherSuites(), it.s); s != nil {
		d.errorf(it.rng, "Invalid cipher_suites", "%s is insecure: %s",
			s.Name, insecureReason(s.Name))
		return 0, false
	}
	d.errorf(it.rng, "Invalid cipher_suites", "unknown cipher suite %q; use an IANA "+
		"name such as \"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256\" or a code such as "+
		"\"0xC02B\"", it.s)
	return 0, false
}

// findSuite looks a suite up by name or by hex code ("0xC02B" or "C02B").
func findSuite(suites []*tls.CipherSuite, s string) *tls.CipherSuite {
	id, isCode := parseSuiteCode(s)
	for _, cs := range suites {
		if cs.Name == s || (isCode && cs.ID == id) {
			return cs
		}
	}
	return nil
}

// parseSuiteCode parses exactly four hex digits, with or without "0x".
func parseSuiteCode(s string) (uint16, bool) {
	hex := strings.TrimPrefix(strings.TrimPrefix(s, "0x"), "0X")
	if len(hex) != 4 {
		return 0, false
	}
	n, err := strconv.ParseUint(hex, 16, 16)
	return uint16(n), err == nil
}

// insecureReason says why Go lists a suite as insecure.
func insecureReason(name string) string {
	switch {
	case strings.Contains(name, "RC4"):
		return "RC4 is broken"
	case strings.Contains(name, "3DES"):
		return "3DES has 64-bit blocks (Sweet32)"
	case strings.HasPrefix(name, "TLS_RSA_"):
		return "RSA key exchange has no forward secrecy"
	case strings.Contains(name, "CBC_SHA256"):
		return "CBC with SHA-256 has no constant-time implementation in Go (Lucky13)"
	}
	return "crypto/tls lists it among its insecure suites"
}

// curves decodes the key-exchange groups in preference order.
func (d *decoder) curves(attr *hcl.Attribute) []tls.CurveID {
	if attr == nil {
		return nil
	}
	items, _ := d.list(attr)
	var ids []tls.CurveID
	for _, it := range items {
		id, known := curveNames[it.s]
		switch {
		case !known:
			d.errorf(it.rng, "Invalid curves", "unknown curve %q; use one of %s",
				it.s, "X25519MLKEM768, X25519, P-256, P-384, P-521")
		case slices.Contains(ids, id):
			d.errorf(it.rng, "Invalid curves", "%q names a curve already listed", it.s)
		default:
			ids = append(ids, id)
		}
	}
	return ids
}

// alpn decodes the protocols offered in ALPN, in preference order.
func (d *decoder) alpn(attr *hcl.Attribute) []string {
	if attr == nil {
		return nil
	}
	items, _ := d.list(attr)
	var protos []string
	for _, it := range d.unique(attr, items) {
		// RFC 7301 section 3.1: a protocol name is 1 to 255 bytes.
		if len(it.s) == 0 || len(it.s) > 255 {
			d.errorf(it.rng, "Invalid alpn", "a protocol name is 1 to 255 bytes")
			continue
		}
		protos = append(protos, it.s)
	}
	return protos
}

// notEmulated refuses AT-TLS attributes that attlsd does not emulate with
// a clearer message than HCL's "unsupported argument".
func (d *decoder) notEmulated(a hcl.Attributes) {
	for name, feature := range notEmulatedNames {
		if attr := a[name]; attr != nil {
			d.errorf(attr.NameRange, "Not emulated", "%s (AT-TLS %s) is not emulated by "+
				"attlsd; remove it", name, feature)
		}
	}
}

// notEmulatedNames maps refused attributes to their AT-TLS names.
var notEmulatedNames = map[string]string{
	"application_controlled": "ApplicationControlled",
	"secondary_map":          "SecondaryMap",
}

// withNotEmulated adds the refused attributes to a block's schema, so that
// notEmulated sees them instead of HCL reporting them as unknown.
func withNotEmulated(attrs ...hcl.AttributeSchema) []hcl.AttributeSchema {
	for name := range notEmulatedNames {
		attrs = append(attrs, hcl.AttributeSchema{Name: name})
	}
	return attrs
}
