package policy

import (
	"net/netip"

	"github.com/hashicorp/hcl/v2"
)

// interceptSchema lists what an intercept block may say.
var interceptSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "port", Required: true},
		{Name: "address"},
	},
}

// interceptSource is a decoded intercept block: a socket that netfilter
// redirects outbound connections to.
type interceptSource struct {
	name  string
	block *hcl.Block
	attrs hcl.Attributes
	port  uint16
	// addr is the listen address; invalid means all addresses.
	addr netip.Addr
	// portOK is false when port was missing or invalid; the intercept then
	// takes no part in the listener checks.
	portOK bool
}

// intercepts decodes every intercept block, in file order. A duplicate
// name is reported and left out.
func (d *decoder) intercepts(blocks hcl.Blocks) []*interceptSource {
	var out []*interceptSource
	byName := map[string]*interceptSource{}
	for _, b := range blocks {
		is := d.intercept(b)
		if first := byName[is.name]; first != nil {
			d.duplicate(b, first.block)
			continue
		}
		byName[is.name] = is
		out = append(out, is)
	}
	return out
}

// intercept decodes one intercept block.
func (d *decoder) intercept(block *hcl.Block) *interceptSource {
	content, diags := block.Body.Content(interceptSchema)
	d.diags = append(d.diags, diags...)
	a := content.Attributes
	d.checkName(block)

	is := &interceptSource{name: block.Labels[0], block: block, attrs: a}
	is.port, is.portOK = d.interceptPort(a["port"])
	is.addr = d.listenAddress(a["address"])
	return is
}

// interceptPort decodes an intercept's port, which is one port: netfilter
// REDIRECT --to-ports sends each connection to a single port anyway.
func (d *decoder) interceptPort(attr *hcl.Attribute) (uint16, bool) {
	first, last, ok := d.portRange(attr, parsePortRange)
	if ok && first != last {
		d.errorf(attr.Expr.Range(), "Invalid port", "an intercept listens on one "+
			"port, not a range")
		return 0, false
	}
	return first, ok
}

// checkIntercepts ties transparent rules to intercepts: such a rule needs
// an intercept to receive connections, and an intercept with no such
// rule would refuse everything that arrives on it.
func (d *decoder) checkIntercepts(rules []*ruleSource, intercepts []*interceptSource) {
	transparent := 0
	for _, src := range rules {
		if !src.transparent {
			continue
		}
		transparent++
		if len(intercepts) == 0 {
			d.errorf(src.block.LabelRanges[0], "Missing intercept", "transparent "+
				"outbound %q takes connections that netfilter redirects to an "+
				"intercept listener, but the policy has no intercept block",
				src.rule.Name)
		}
	}
	if transparent > 0 {
		return
	}
	for _, is := range intercepts {
		d.warnf(is.block.LabelRanges[0], "Unused intercept", "no transparent "+
			"outbound rule takes what arrives on intercept %q, so every redirected "+
			"connection will be refused; add an outbound rule with remote_ports "+
			"and remote_addresses", is.name)
	}
}
