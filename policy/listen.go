package policy

import (
	"cmp"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// listenKey identifies one socket: a port and a listen address.
type listenKey struct {
	port uint16
	addr netip.Addr
}

// listenerSet gathers the listeners of a policy while rules are added in
// match order, noting collisions and shadowed rules.
type listenerSet struct {
	byKey  map[listenKey]*Listener
	byPort map[uint16][]listenKey
	// firstRule is the first rule added to each listener.
	firstRule map[listenKey]*ruleSource
	// catchAll is, per listener, the first rule that takes every client.
	catchAll map[listenKey]*ruleSource
	// shadowed counts, per rule, the ports where a catch-all comes first,
	// and names those catch-alls in order.
	shadowed map[*ruleSource]*shadow
	// collisions are pairs of rules whose addresses cannot both be bound.
	collisions []collision
}

// shadow is how much of a rule's port range other rules hide.
type shadow struct {
	ports int           // how many of its ports are hidden
	by    []*ruleSource // the catch-alls that hide them, in port order
}

// collision is two rules that want sockets which cannot coexist.
type collision struct {
	a, b *ruleSource
	port uint16
}

// sortRules puts rules in AT-TLS match order: priority high to low, then
// name.
func sortRules(rules []*ruleSource) {
	slices.SortStableFunc(rules, func(a, b *ruleSource) int {
		return cmp.Or(
			cmp.Compare(b.rule.Priority, a.rule.Priority),
			strings.Compare(a.rule.Name, b.rule.Name),
		)
	})
}

// listen builds the listeners for rules, which must be in match order,
// and reports collisions and rules that can never match.
func (d *decoder) listen(rules []*ruleSource, order map[*ruleSource]int) []*Listener {
	set := &listenerSet{
		byKey:     map[listenKey]*Listener{},
		byPort:    map[uint16][]listenKey{},
		firstRule: map[listenKey]*ruleSource{},
		catchAll:  map[listenKey]*ruleSource{},
		shadowed:  map[*ruleSource]*shadow{},
	}
	for _, src := range rules {
		if !src.portsOK {
			continue
		}
		for p := int(src.rule.FirstPort); p <= int(src.rule.LastPort); p++ {
			set.add(src, uint16(p))
		}
	}
	d.reportCollisions(set.collisions, order)
	d.reportUnreachable(set.shadowed)
	return set.sorted()
}

// add puts src on the listener for port, unless its address collides
// with one already bound there.
func (s *listenerSet) add(src *ruleSource, port uint16) {
	key := listenKey{port: port, addr: src.rule.Address}
	l := s.byKey[key]
	if l == nil {
		if other := s.collider(key); other != nil {
			s.collisions = append(s.collisions, collision{a: other, b: src, port: port})
			return
		}
		l = &Listener{Addr: listenAddr(key), Port: port}
		s.byKey[key] = l
		s.byPort[port] = append(s.byPort[port], key)
		s.firstRule[key] = src
	}
	if first := s.catchAll[key]; first != nil {
		s.shadow(src, first)
	} else if len(src.rule.RemoteAddresses) == 0 {
		s.catchAll[key] = src
	}
	l.Rules = append(l.Rules, src.rule)
}

// collider returns the first rule of a listener on the same port whose
// address cannot be bound beside key's, or nil.
func (s *listenerSet) collider(key listenKey) *ruleSource {
	for _, other := range s.byPort[key.port] {
		if collides(key.addr, other.addr) {
			return s.firstRule[other]
		}
	}
	return nil
}

// collides reports whether two different listen addresses on one port
// clash. A wildcard (all addresses, 0.0.0.0 or ::) takes the port on
// every address, so it clashes with anything else: Go listens on :: as a
// dual-stack socket, and Linux refuses a specific address beside a
// wildcard bound without SO_REUSEPORT.
func collides(a, b netip.Addr) bool {
	return a == b || isWildcard(a) || isWildcard(b)
}

// isWildcard reports whether a listens on all addresses.
func isWildcard(a netip.Addr) bool {
	return !a.IsValid() || a.IsUnspecified()
}

// shadow notes that first, a catch-all, hides src on one more port.
func (s *listenerSet) shadow(src, first *ruleSource) {
	sh := s.shadowed[src]
	if sh == nil {
		sh = &shadow{}
		s.shadowed[src] = sh
	}
	sh.ports++
	if !slices.Contains(sh.by, first) {
		sh.by = append(sh.by, first)
	}
}

// sorted returns the listeners by port, then address.
func (s *listenerSet) sorted() []*Listener {
	var out []*Listener
	for _, l := range s.byKey {
		out = append(out, l)
	}
	slices.SortFunc(out, func(a, b *Listener) int {
		return cmp.Or(cmp.Compare(a.Port, b.Port), strings.Compare(a.Addr, b.Addr))
	})
	return out
}

// listenAddr is the host:port to bind; the host is empty for all
// addresses.
func listenAddr(key listenKey) string {
	port := strconv.Itoa(int(key.port))
	if !key.addr.IsValid() {
		return ":" + port
	}
	return net.JoinHostPort(key.addr.String(), port)
}

// reportCollisions reports each colliding pair of rules once, at the port
// of the rule that comes later in the file.
func (d *decoder) reportCollisions(cs []collision, order map[*ruleSource]int) {
	seen := map[[2]*ruleSource]bool{}
	for _, c := range cs {
		first, second := c.a, c.b
		if order[first] > order[second] {
			first, second = second, first
		}
		if seen[[2]*ruleSource{first, second}] {
			continue
		}
		seen[[2]*ruleSource{first, second}] = true
		d.errorf(second.attrs["port"].Expr.Range(), "Listener collides",
			"rule %q on %s collides with rule %q on %s; give both the same "+
				"address or use different ports", second.rule.Name,
			listenAddr(listenKey{c.port, second.rule.Address}), first.rule.Name,
			listenAddr(listenKey{c.port, first.rule.Address}))
	}
}

// reportUnreachable reports rules hidden on every one of their ports by
// rules that take every client first.
func (d *decoder) reportUnreachable(shadowed map[*ruleSource]*shadow) {
	for src, sh := range shadowed {
		r := src.rule
		if sh.ports < int(r.LastPort)-int(r.FirstPort)+1 {
			continue
		}
		d.errorf(src.block.LabelRanges[0], "Unreachable rule",
			"rule %q is never reached: %s", r.Name, shadowers(r, sh))
	}
}

// shadowers says which rules hide r, and where.
func shadowers(r *Rule, sh *shadow) string {
	if len(sh.by) > 1 {
		names := make([]string, len(sh.by))
		for i, s := range sh.by {
			names[i] = strconv.Quote(s.rule.Name)
		}
		return fmt.Sprintf("rules %s take every client on its ports first",
			strings.Join(names, ", "))
	}
	where := fmt.Sprintf("port %d", r.FirstPort)
	if r.LastPort != r.FirstPort {
		where = fmt.Sprintf("ports %d-%d", r.FirstPort, r.LastPort)
	}
	return fmt.Sprintf("rule %q takes every client on %s first", sh.by[0].rule.Name, where)
}
