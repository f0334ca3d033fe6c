package policy

import (
	"crypto/x509"
	"slices"

	"github.com/hashicorp/hcl/v2"
)

// tlsRule ties an inbound TLS rule to the environment it names and checks
// that the environment can serve it.
func (d *decoder) tlsRule(src *ruleSource, envs map[string]*envSource) {
	attr := src.attrs["environment"]
	if attr == nil {
		d.errorf(src.block.LabelRanges[0], "Missing environment", "inbound %q has "+
			"tls = true, which needs environment; set tls = false for cleartext",
			src.rule.Name)
		return
	}
	es := d.environmentRef(attr, envs)
	if es == nil {
		return
	}
	src.rule.Environment = es.env
	d.serverCertificate(es, attr)
	d.clientAuthTrust(src, es)
}

// clientRule ties an outbound rule to the environment it names. Any
// environment can act as a TLS client: without a certificate it presents
// none, and without trust it verifies servers against the system roots.
func (d *decoder) clientRule(src *ruleSource, envs map[string]*envSource) {
	attr := src.attrs["environment"]
	if attr == nil {
		return // required in the schema, so HCL has reported it
	}
	es := d.environmentRef(attr, envs)
	if es == nil {
		return
	}
	src.rule.Environment = es.env
	d.clientCertificateUsage(es, attr)
}

// environmentRef returns the environment that attr names, or nil when
// attr is invalid or names none.
func (d *decoder) environmentRef(attr *hcl.Attribute, envs map[string]*envSource) *envSource {
	name, ok := d.str(attr)
	if !ok {
		return nil
	}
	es := envs[name]
	if es == nil {
		d.errorf(attr.Expr.Range(), "Unknown environment",
			"no environment block is named %q", name)
	}
	return es
}

// serverCertificate checks that the environment can act as a TLS server.
func (d *decoder) serverCertificate(es *envSource, attr *hcl.Attribute) {
	if !es.hasCertificate() {
		d.errorf(attr.Expr.Range(), "Missing certificate", "environment %q has no "+
			"certificate and private_key, which an inbound TLS rule needs", es.env.Name)
		return
	}
	d.serverCertificateUsage(es, attr)
}

// serverCertificateUsage warns when an inbound rule would present a
// certificate whose extended key usage leaves out server authentication,
// such as a client certificate: clients that verify the server, Go's,
// OpenSSL's (curl) and browsers among them, refuse it.
func (d *decoder) serverCertificateUsage(es *envSource, attr *hcl.Attribute) {
	pair := es.env.Pair
	if pair == nil || allowsUsage(pair.Leaf, x509.ExtKeyUsageServerAuth) {
		return
	}
	d.warnf(attr.Expr.Range(), "Certificate usage", "environment %q presents a "+
		"certificate whose extended key usage leaves out server authentication; "+
		"clients that verify the server, curl and browsers among them, will refuse it",
		es.env.Name)
}

// clientCertificateUsage warns when an outbound rule would present a
// certificate whose extended key usage leaves out client authentication:
// servers that verify client certificates, Go's among them, refuse it.
func (d *decoder) clientCertificateUsage(es *envSource, attr *hcl.Attribute) {
	pair := es.env.Pair
	if pair == nil || allowsUsage(pair.Leaf, x509.ExtKeyUsageClientAuth) {
		return
	}
	d.warnf(attr.Expr.Range(), "Certificate usage", "environment %q presents a "+
		"certificate whose extended key usage leaves out client authentication; "+
		"servers that verify client certificates will refuse it", es.env.Name)
}

// allowsUsage reports whether c may serve usage. A certificate without
// extended key usage may serve any purpose.
func allowsUsage(c *x509.Certificate, usage x509.ExtKeyUsage) bool {
	if len(c.ExtKeyUsage) == 0 && len(c.UnknownExtKeyUsage) == 0 {
		return true
	}
	return slices.Contains(c.ExtKeyUsage, usage) ||
		slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageAny)
}

// clientAuthTrust checks that full and required client authentication
// have CA bundles to verify against.
func (d *decoder) clientAuthTrust(src *ruleSource, es *envSource) {
	mode := src.rule.ClientAuth
	if mode != ClientAuthFull && mode != ClientAuthRequired || es.hasTrust() {
		return
	}
	d.errorf(src.attrs["client_auth"].Expr.Range(), "Missing trust",
		"client_auth = %q verifies client certificates, but environment %q "+
			"sets no trust to verify them against", mode.String(), es.env.Name)
}

// cleartextRule refuses TLS settings on a tls = false rule.
func (d *decoder) cleartextRule(src *ruleSource) {
	if attr := src.attrs["environment"]; attr != nil {
		d.errorf(attr.NameRange, "Invalid environment",
			"a cleartext rule (tls = false) takes no environment")
	}
	if src.rule.ClientAuth != ClientAuthNone {
		d.errorf(src.attrs["client_auth"].Expr.Range(), "Invalid client_auth",
			"client_auth = %q needs tls = true", src.rule.ClientAuth.String())
	}
}
