package policy

import (
	"net/netip"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
)

// outboundSchema lists what an outbound block may say. The inbound-only
// attributes are listed so that inboundOnly can say why they are refused.
var outboundSchema = &hcl.BodySchema{
	Attributes: withInboundOnly(withNotEmulated(withLimits(
		hcl.AttributeSchema{Name: "port"},
		hcl.AttributeSchema{Name: "address"},
		hcl.AttributeSchema{Name: "endpoint"},
		hcl.AttributeSchema{Name: "remote_ports"},
		hcl.AttributeSchema{Name: "remote_addresses"},
		hcl.AttributeSchema{Name: "server_name"},
		hcl.AttributeSchema{Name: "environment", Required: true},
		hcl.AttributeSchema{Name: "priority"},
	)...)),
}

// inboundOnlyNames maps the inbound attributes refused on an outbound rule
// to what an outbound rule does instead.
var inboundOnlyNames = map[string]string{
	"tls":            "an outbound rule always originates TLS",
	"client_auth":    "an outbound rule presents its environment's certificate, if it has one",
	"backend":        "an outbound rule connects to endpoint, or to the original destination",
	"proxy_protocol": "an outbound rule sends no PROXY header",
}

// outboundMode is how an outbound rule finds its connections.
type outboundMode int

const (
	modeUnknown     outboundMode = iota // mixed or neither; already reported
	modePortMapped                      // listens on port, connects to endpoint
	modeTransparent                     // takes redirected connections
)

// The attributes that select each mode, in the order messages name them.
var (
	portMappedAttrs  = []string{"port", "endpoint"}
	transparentAttrs = []string{"remote_ports", "remote_addresses"}
)

// loopback is the default listen address of a port-mapped rule.
var loopback = netip.MustParseAddr("127.0.0.1")

// outbound decodes one outbound block and ties it to its environment.
// Every attribute is decoded whatever the mode, so that all mistakes are
// reported at once.
func (d *decoder) outbound(block *hcl.Block, envs map[string]*envSource) *ruleSource {
	content, diags := block.Body.Content(outboundSchema)
	d.diags = append(d.diags, diags...)
	a := content.Attributes
	d.notEmulated(a)
	d.inboundOnly(a)
	d.checkName(block)

	// An outbound rule writes no header: its peer is a TLS server.
	r := &Rule{Name: block.Labels[0], Direction: Outbound, TLS: true,
		ProxyProtocol: ProxyNone}
	src := &ruleSource{rule: r, block: block, attrs: a}
	r.Priority = d.integer(a["priority"], minPriority, maxPriority, minPriority)
	mode := d.outboundMode(src)
	d.portMapped(src, mode)
	d.original(src, mode)
	r.ServerName = d.serverName(a["server_name"], r.ServerName)
	d.limits(r, a)
	d.clientRule(src, envs)
	return src
}

// outboundMode tells a port-mapped rule from a transparent one by the
// attributes it sets, and reports a rule that mixes the two, sets
// neither, or sets half of one.
func (d *decoder) outboundMode(src *ruleSource) outboundMode {
	mapped := present(src.attrs, portMappedAttrs)
	transparent := present(src.attrs, transparentAttrs)
	label := src.block.LabelRanges[0]
	switch {
	case len(mapped) > 0 && len(transparent) > 0:
		d.errorf(label, "Mixed outbound modes", "outbound %q sets port-mapped "+
			"attributes (%s) and transparent ones (%s); a rule is one or the other",
			src.rule.Name, strings.Join(mapped, ", "), strings.Join(transparent, ", "))
	case len(mapped) > 0:
		d.needBoth(src, portMappedAttrs, "port-mapped")
		return modePortMapped
	case len(transparent) > 0:
		d.needBoth(src, transparentAttrs, "transparent")
		return modeTransparent
	default:
		d.errorf(label, "Missing outbound mode", "outbound %q needs port and "+
			"endpoint to be port-mapped, or remote_ports and remote_addresses to "+
			"be transparent", src.rule.Name)
	}
	return modeUnknown
}

// present returns the names in names that a has, in the same order.
func present(a hcl.Attributes, names []string) []string {
	var out []string
	for _, n := range names {
		if a[n] != nil {
			out = append(out, n)
		}
	}
	return out
}

// needBoth reports the missing half of a pair of attributes that select a
// mode, at the half that is there.
func (d *decoder) needBoth(src *ruleSource, pair []string, mode string) {
	for i, name := range pair {
		other := pair[1-i]
		if attr := src.attrs[name]; attr != nil && src.attrs[other] == nil {
			d.errorf(attr.NameRange, "Missing "+other, "%s makes outbound %q %s, "+
				"which needs %s as well", name, src.rule.Name, mode, other)
		}
	}
}

// portMapped decodes where a port-mapped rule listens and where it
// connects. The endpoint's host is the default server name.
func (d *decoder) portMapped(src *ruleSource, mode outboundMode) {
	r, a := src.rule, src.attrs
	portsOK := d.ports(r, a["port"])
	src.portsOK = portsOK && mode == modePortMapped
	r.Address = d.outboundAddress(a["address"], mode)
	r.Endpoint, r.ServerName = d.endpoint(a["endpoint"])
}

// outboundAddress decodes where a port-mapped rule listens. The default
// is loopback: the apps it serves run on this host, and on every address
// attlsd would originate TLS, with the environment's certificate, for
// anyone who can reach the port.
func (d *decoder) outboundAddress(attr *hcl.Attribute, mode outboundMode) netip.Addr {
	switch {
	case attr == nil && mode == modePortMapped:
		return loopback
	case attr == nil:
		return netip.Addr{}
	case mode == modeTransparent:
		d.errorf(attr.NameRange, "Invalid address", "a transparent rule listens "+
			"nowhere itself: its connections arrive on intercept listeners; "+
			"remove address")
		return netip.Addr{}
	}
	return d.listenAddress(attr)
}

// endpoint decodes a port-mapped rule's endpoint and returns it with the
// name its certificate must carry.
func (d *decoder) endpoint(attr *hcl.Attribute) (endpoint, serverName string) {
	if attr == nil {
		return "", ""
	}
	s, ok := d.str(attr)
	if !ok {
		return "", ""
	}
	endpoint, host, err := parseEndpoint(s)
	if err != nil {
		d.errorf(attr.Expr.Range(), "Invalid endpoint", "%v", err)
		return "", ""
	}
	return endpoint, serverNameOf(host)
}

// serverName decodes server_name, or returns def when it is absent or
// invalid.
func (d *decoder) serverName(attr *hcl.Attribute, def string) string {
	if attr == nil {
		return def
	}
	s, ok := d.str(attr)
	if !ok {
		return def
	}
	if s == "" {
		d.errorf(attr.Expr.Range(), "Invalid server_name", "server_name is empty; "+
			"omit it to verify the endpoint's host or the original destination's address")
		return def
	}
	if err := checkServerName(s); err != nil {
		d.errorf(attr.Expr.Range(), "Invalid server_name", "%v", err)
		return def
	}
	return serverNameOf(s)
}

// original decodes which original destinations a transparent rule takes.
// Only a transparent rule whose remote_ports and remote_addresses are
// both there and valid takes part in the reachability check.
func (d *decoder) original(src *ruleSource, mode outboundMode) {
	r, a := src.rule, src.attrs
	before := d.errorCount()
	r.FirstRemotePort, r.LastRemotePort, _ = d.portRange(a["remote_ports"], parsePortRange)
	r.AnyRemote, r.RemoteAddresses = d.destinations(a["remote_addresses"])
	src.transparent = mode == modeTransparent
	src.remoteOK = src.transparent && d.errorCount() == before &&
		a["remote_ports"] != nil && a["remote_addresses"] != nil
}

// destinations decodes a transparent rule's remote_addresses: the string
// "any", or a list of CIDR prefixes and IPs.
func (d *decoder) destinations(attr *hcl.Attribute) (anyRemote bool, prefixes []netip.Prefix) {
	if attr == nil {
		return false, nil
	}
	s, isString := stringValue(attr)
	switch {
	case isString && s == "any":
		return true, nil
	case isString:
		d.errorf(attr.Expr.Range(), "Invalid remote_addresses", "%q is neither "+
			"\"any\" nor a list of CIDR prefixes or IPs%s", s, listHint(s))
		return false, nil
	}
	return false, d.prefixes(attr, "an empty list takes no destination; "+
		"write remote_addresses = \"any\" for every address",
		"for every address write remote_addresses = \"any\", a string, not a list")
}

// stringValue returns attr's value when it is a known string, without
// reporting anything: other values are left to the list decoder.
func stringValue(attr *hcl.Attribute) (string, bool) {
	v, diags := attr.Expr.Value(nil)
	if diags.HasErrors() || !v.IsWhollyKnown() || v.IsNull() {
		return "", false
	}
	if !v.Type().Equals(cty.String) {
		return "", false
	}
	return v.AsString(), true
}

// listHint suggests the list form for a lone prefix written as a string.
func listHint(s string) string {
	if _, err := parseRemote(s); err != nil {
		return ""
	}
	return "; write [\"" + s + "\"] for one"
}

// inboundOnly refuses inbound attributes on an outbound rule, saying what
// the outbound rule does instead.
func (d *decoder) inboundOnly(a hcl.Attributes) {
	for name, instead := range inboundOnlyNames {
		if attr := a[name]; attr != nil {
			d.errorf(attr.NameRange, "Unsupported argument", "%s applies to inbound "+
				"rules only; %s", name, instead)
		}
	}
}

// withInboundOnly adds the inbound-only attributes to an outbound schema.
func withInboundOnly(attrs []hcl.AttributeSchema) []hcl.AttributeSchema {
	for name := range inboundOnlyNames {
		attrs = append(attrs, hcl.AttributeSchema{Name: name})
	}
	return attrs
}
