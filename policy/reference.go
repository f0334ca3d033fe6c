package policy

import (
	"github.com/hashicorp/hcl/v2"
)

// tlsRule ties a TLS rule to the environment it names and checks that the
// environment can serve it.
func (d *decoder) tlsRule(src *ruleSource, envs map[string]*envSource) {
	attr := src.attrs["environment"]
	if attr == nil {
		d.errorf(src.block.LabelRanges[0], "Missing environment", "inbound %q has "+
			"tls = true, which needs environment; set tls = false for cleartext",
			src.rule.Name)
		return
	}
	name, ok := d.str(attr)
	if !ok {
		return
	}
	es := envs[name]
	if es == nil {
		d.errorf(attr.Expr.Range(), "Unknown environment",
			"no environment block is named %q", name)
		return
	}
	src.rule.Environment = es.env
	d.serverCertificate(es, attr)
	d.clientAuthTrust(src, es)
}

// serverCertificate checks that the environment can act as a TLS server.
func (d *decoder) serverCertificate(es *envSource, attr *hcl.Attribute) {
	if es.hasCertificate() {
		return
	}
	d.errorf(attr.Expr.Range(), "Missing certificate", "environment %q has no "+
		"certificate and private_key, which an inbound TLS rule needs", es.env.Name)
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
