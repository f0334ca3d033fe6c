package policy

import (
	"cmp"
	"fmt"
	"maps"
	"math/big"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
)

// AT-TLS bounds for a rule's priority.
const (
	minPriority = 1
	maxPriority = 2_000_000_000
)

// inboundSchema lists what an inbound block may say.
var inboundSchema = &hcl.BodySchema{
	Attributes: withNotEmulated(withLimits(
		hcl.AttributeSchema{Name: "port", Required: true},
		hcl.AttributeSchema{Name: "address"},
		hcl.AttributeSchema{Name: "remote_addresses"},
		hcl.AttributeSchema{Name: "priority"},
		hcl.AttributeSchema{Name: "tls"},
		hcl.AttributeSchema{Name: "environment"},
		hcl.AttributeSchema{Name: "client_auth"},
		hcl.AttributeSchema{Name: "backend", Required: true},
		hcl.AttributeSchema{Name: "proxy_protocol"},
	)...),
}

// clientAuthNames maps the policy spelling of client_auth to its mode.
var clientAuthNames = map[string]ClientAuth{
	"none":     ClientAuthNone,
	"passthru": ClientAuthPassthru,
	"full":     ClientAuthFull,
	"required": ClientAuthRequired,
}

// proxyProtocolNames maps the policy spelling of proxy_protocol to its format.
var proxyProtocolNames = map[string]ProxyProtocol{
	"v2":   ProxyV2,
	"v1":   ProxyV1,
	"none": ProxyNone,
}

// ruleSource is a decoded inbound or outbound rule with the block it came
// from, which later checks point into.
type ruleSource struct {
	rule  *Rule
	block *hcl.Block
	attrs hcl.Attributes
	// portsOK is true when the rule listens on a valid port: an inbound
	// or port-mapped outbound rule. Only such rules take part in the
	// listener checks.
	portsOK bool
	// transparent marks an outbound rule that sets remote_ports or
	// remote_addresses and nothing of the port-mapped mode.
	transparent bool
	// remoteOK is true for a transparent rule whose original destinations
	// decoded cleanly; only such rules take part in the reachability check.
	remoteOK bool
}

// inbound decodes one inbound block and ties it to its environment.
func (d *decoder) inbound(block *hcl.Block, envs map[string]*envSource) *ruleSource {
	content, diags := block.Body.Content(inboundSchema)
	d.diags = append(d.diags, diags...)
	a := content.Attributes
	d.notEmulated(a)
	d.checkName(block)

	r := &Rule{Name: block.Labels[0]}
	src := &ruleSource{rule: r, block: block, attrs: a}
	src.portsOK = d.ports(r, a["port"])
	r.Address = d.listenAddress(a["address"])
	r.RemoteAddresses = d.remoteAddresses(a["remote_addresses"])
	r.Priority = d.integer(a["priority"], minPriority, maxPriority, minPriority)
	r.TLS = d.boolean(a["tls"], true)
	r.ClientAuth = enum(d, a["client_auth"], clientAuthNames, ClientAuthNone)
	r.Backend = d.backend(a["backend"])
	r.ProxyProtocol = enum(d, a["proxy_protocol"], proxyProtocolNames, ProxyV2)
	d.limits(r, a)

	if r.TLS {
		d.tlsRule(src, envs)
	} else {
		d.cleartextRule(src)
	}
	return src
}

// ports decodes port into r's listen range; ok is false when port is
// missing or invalid.
func (d *decoder) ports(r *Rule, attr *hcl.Attribute) bool {
	var ok bool
	r.FirstPort, r.LastPort, ok = d.portRange(attr, parsePorts)
	return ok
}

// portRange decodes a port written as a number, or as a string holding a
// port or a range that parse accepts.
func (d *decoder) portRange(attr *hcl.Attribute, parse func(string) (uint16, uint16, error)) (
	first, last uint16, ok bool) {
	if attr == nil {
		return 0, 0, false
	}
	v, ok := d.value(attr)
	if !ok {
		return 0, 0, false
	}
	var err error
	switch v.Type() {
	case cty.Number:
		first, err = numberPort(v.AsBigFloat())
		last = first
	case cty.String:
		first, last, err = parse(v.AsString())
	default:
		d.errorf(attr.Expr.Range(), "Invalid "+attr.Name, "%s must be a number or a "+
			"string such as \"8443-8445\", not %s", attr.Name, v.Type().FriendlyName())
		return 0, 0, false
	}
	if err != nil {
		d.errorf(attr.Expr.Range(), "Invalid "+attr.Name, "%v", err)
		return 0, 0, false
	}
	return first, last, true
}

// numberPort checks a port written as a number.
func numberPort(f *big.Float) (uint16, error) {
	n, ok := wholeIn(f, 1, 65535)
	if !ok {
		return 0, fmt.Errorf("port %s is not a whole number from 1 to 65535",
			f.Text('f', -1))
	}
	return uint16(n), nil
}

// listenAddress decodes address; absent means all addresses.
func (d *decoder) listenAddress(attr *hcl.Attribute) netip.Addr {
	if attr == nil {
		return netip.Addr{}
	}
	s, ok := d.str(attr)
	if !ok {
		return netip.Addr{}
	}
	a, err := parseListenAddress(s)
	if err != nil {
		d.errorf(attr.Expr.Range(), "Invalid address", "%v", err)
	}
	return a
}

// remoteAddresses decodes the client prefixes an inbound rule is
// limited to.
func (d *decoder) remoteAddresses(attr *hcl.Attribute) []netip.Prefix {
	return d.prefixes(attr, "an empty list takes no client; "+
		"omit remote_addresses to take every client",
		"omit remote_addresses to take every client")
}

// prefixes decodes a list of CIDR prefixes or IPs. An empty list is an
// error that emptyDetail explains; anyHint says how to take every
// address when the list holds "any".
func (d *decoder) prefixes(attr *hcl.Attribute, emptyDetail, anyHint string) []netip.Prefix {
	if attr == nil {
		return nil
	}
	items, ok := d.list(attr)
	if ok && len(items) == 0 && isEmptyList(attr) {
		d.errorf(attr.Expr.Range(), "Invalid "+attr.Name, "%s", emptyDetail)
		return nil
	}
	var prefixes []netip.Prefix
	for _, it := range items {
		p, err := parseRemote(it.s)
		if err != nil && it.s == "any" {
			d.errorf(it.rng, "Invalid "+attr.Name, "%v; %s", err, anyHint)
			continue
		}
		if err != nil {
			d.errorf(it.rng, "Invalid "+attr.Name, "%v", err)
			continue
		}
		if q, err := netip.ParsePrefix(it.s); err == nil && q.Addr().Unmap() != p.Addr() {
			d.warnf(it.rng, "Host bits set in "+attr.Name, "%q means %s, every address "+
				"of that network; write \"%s\" for the one address", it.s, p, q.Addr().Unmap())
		}
		prefixes = append(prefixes, p)
	}
	return prefixes
}

// backend decodes where the rule forwards cleartext.
func (d *decoder) backend(attr *hcl.Attribute) Backend {
	if attr == nil {
		return Backend{}
	}
	s, ok := d.str(attr)
	if !ok {
		return Backend{}
	}
	b, err := parseBackend(s, d.resolve)
	if err != nil {
		d.errorf(attr.Expr.Range(), "Invalid backend", "%v", err)
	}
	return b
}

// enum decodes a string attribute that must be one of names' keys.
func enum[T cmp.Ordered](d *decoder, attr *hcl.Attribute, names map[string]T, def T) T {
	if attr == nil {
		return def
	}
	s, ok := d.str(attr)
	if !ok {
		return def
	}
	v, ok := names[s]
	if !ok {
		d.errorf(attr.Expr.Range(), "Invalid "+attr.Name, "%q is not one of %s",
			s, choices(names))
		return def
	}
	return v
}

// choices lists names' keys, quoted, in the order of their values.
func choices[T cmp.Ordered](names map[string]T) string {
	keys := slices.Collect(maps.Keys(names))
	slices.SortFunc(keys, func(a, b string) int { return cmp.Compare(names[a], names[b]) })
	for i, k := range keys {
		keys[i] = strconv.Quote(k)
	}
	return strings.Join(keys, ", ")
}
