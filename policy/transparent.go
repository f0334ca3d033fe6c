package policy

import (
	"net/netip"
	"slices"
)

// reportHiddenTransparent reports transparent rules that can never match
// because one rule before them, in match order, takes every original
// destination they would. Covering by several rules together is not
// detected; such a rule is merely dead, not wrong.
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
		if !slices.ContainsFunc(e.RemoteAddresses, func(q netip.Prefix) bool {
			return q.Bits() <= p.Bits() && q.Contains(p.Addr())
		}) {
			return false
		}
	}
	return true
}
