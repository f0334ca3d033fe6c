package policy

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Every address of one family, as a prefix.
var (
	everyIPv4 = netip.MustParsePrefix("0.0.0.0/0")
	everyIPv6 = netip.MustParsePrefix("::/0")
)

// coveredBy reports whether one of qs holds every address of p.
//
// Reachability checks use it prefix by prefix: a prefix held only by
// several prefixes together, such as 10.0.0.0/8 by 10.0.0.0/9 and
// 10.128.0.0/9, is not seen as covered. A rule missed that way is merely
// dead, not wrong, and the check stays simple.
func coveredBy(p netip.Prefix, qs []netip.Prefix) bool {
	return slices.ContainsFunc(qs, func(q netip.Prefix) bool {
		return q.Bits() <= p.Bits() && q.Contains(p.Addr())
	})
}

// reportHiddenTransparent reports transparent rules that can never match
// because one rule before them, in match order, takes every original
// destination they would. Covering by several rules together is not
// detected: their port ranges differ.
func (d *decoder) reportHiddenTransparent(rules []*ruleSource) {
	var earlier []*Rule
	for _, src := range rules {
		if !src.remoteOK {
			continue
		}
		r := src.rule
		if by := coverer(earlier, r); by != nil {
			d.errorf(src.block.LabelRanges[0], "Unreachable rule", "rule %q is "+
				"never reached: rule %q comes first and takes all of its remote "+
				"ports and addresses", r.Name, by.Name)
		}
		earlier = append(earlier, r)
	}
}

// coverer returns the first of rules that covers r, or nil.
func coverer(rules []*Rule, r *Rule) *Rule {
	for _, e := range rules {
		if covers(e, r) {
			return e
		}
	}
	return nil
}

// covers reports whether transparent rule e takes every destination that
// transparent rule l takes.
func covers(e, l *Rule) bool {
	if e.FirstRemotePort > l.FirstRemotePort || e.LastRemotePort < l.LastRemotePort {
		return false
	}
	if e.AnyRemote || l.AnyRemote {
		return e.AnyRemote
	}
	for _, p := range l.RemoteAddresses {
		if !coveredBy(p, e.RemoteAddresses) {
			return false
		}
	}
	return true
}

// shadow is how much of a rule's port range earlier rules hide.
type shadow struct {
	ports int       // how many of its ports are hidden
	by    []*binder // the rules that hide it, in the order first met
}

// hiders returns the rules before r on a listener at addr that between
// them take every client r would, each of r's prefixes inside a prefix of
// one of them (see coveredBy), or nil when some client reaches r.
func hiders(earlier []*binder, r *Rule, addr netip.Addr) []*binder {
	taking := map[*binder]bool{}
	for _, p := range clientPrefixes(r, addr) {
		e := firstTaking(earlier, p)
		if e == nil {
			return nil
		}
		taking[e] = true
	}
	var by []*binder // in match order
	for _, e := range earlier {
		if taking[e] {
			by = append(by, e)
		}
	}
	return by
}

// firstTaking returns the first of rules that takes every client in p.
func firstTaking(rules []*binder, p netip.Prefix) *binder {
	for _, e := range rules {
		rem := e.src.rule.RemoteAddresses
		if len(rem) == 0 || coveredBy(p, rem) {
			return e
		}
	}
	return nil
}

// clientPrefixes returns the clients r takes on a listener at addr: its
// remote_addresses, or every client that can reach the listener. A
// wildcard listener, 0.0.0.0 included, takes IPv6 clients as well: Go
// binds it as one dual-stack socket (see collides), and an IPv4 client
// arrives there as an IPv4-mapped address, which Rule.Takes unmaps.
func clientPrefixes(r *Rule, addr netip.Addr) []netip.Prefix {
	switch {
	case len(r.RemoteAddresses) > 0:
		return r.RemoteAddresses
	case isWildcard(addr):
		return []netip.Prefix{everyIPv4, everyIPv6}
	case addr.Is4():
		return []netip.Prefix{everyIPv4}
	}
	return []netip.Prefix{everyIPv6}
}

// reportUnreachable reports rules hidden on every one of their ports by
// rules before them, at the rule's remote_addresses or, without them, at
// its name.
func (d *decoder) reportUnreachable(shadowed map[*binder]*shadow) {
	for b, sh := range shadowed {
		r := b.src.rule
		if sh.ports < int(r.LastPort)-int(r.FirstPort)+1 {
			continue
		}
		at := b.block.LabelRanges[0]
		if attr := b.src.attrs["remote_addresses"]; attr != nil {
			at = attr.Expr.Range()
		}
		d.errorf(at, "Unreachable rule", "rule %q is never reached: %s", r.Name,
			shadowers(r, sh))
	}
}

// shadowers says which rules hide r, and where.
func shadowers(r *Rule, sh *shadow) string {
	where := fmt.Sprintf("port %d", r.FirstPort)
	if r.LastPort != r.FirstPort {
		where = fmt.Sprintf("ports %d-%d", r.FirstPort, r.LastPort)
	}
	if len(sh.by) == 1 {
		return fmt.Sprintf("rule %q comes first on %s and takes all of its clients",
			sh.by[0].name, where)
	}
	names := make([]string, len(sh.by))
	for i, s := range sh.by {
		names[i] = strconv.Quote(s.name)
	}
	return fmt.Sprintf("rules %s come first on %s and take all of its clients",
		strings.Join(names, ", "), where)
}
