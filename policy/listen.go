package policy

import (
	"cmp"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/hashicorp/hcl/v2"
)

// listenKey identifies one socket: a port and a listen address.
type listenKey struct {
	port uint16
	addr netip.Addr
}

// binder is a block that needs sockets: an inbound rule, a port-mapped
// outbound rule, or an intercept.
type binder struct {
	kind ListenerKind
	name string
	// src is the rule; nil for an intercept.
	src   *ruleSource
	block *hcl.Block
	// portRange is where the port attribute's value is written.
	portRange   hcl.Range
	first, last uint16
	addr        netip.Addr
}

// String names the binder as messages do, such as `outbound rule "api"`.
func (b *binder) String() string {
	switch b.kind {
	case ListenOutbound:
		return fmt.Sprintf("outbound rule %q", b.name)
	case ListenIntercept:
		return fmt.Sprintf("intercept %q", b.name)
	}
	return fmt.Sprintf("inbound rule %q", b.name)
}

// binders lists the blocks that need sockets: rules with valid ports, in
// match order, then intercepts in file order.
func binders(rules []*ruleSource, intercepts []*interceptSource) []*binder {
	var out []*binder
	for _, src := range rules {
		if !src.portsOK {
			continue
		}
		r := src.rule
		kind := ListenInbound
		if r.Direction == Outbound {
			kind = ListenOutbound
		}
		out = append(out, &binder{kind: kind, name: r.Name, src: src, block: src.block,
			portRange: src.attrs["port"].Expr.Range(), first: r.FirstPort,
			last: r.LastPort, addr: r.Address})
	}
	for _, is := range intercepts {
		if is.portOK {
			out = append(out, &binder{kind: ListenIntercept, name: is.name,
				block: is.block, portRange: is.attrs["port"].Expr.Range(),
				first: is.port, last: is.port, addr: is.addr})
		}
	}
	return out
}

// listenerSet gathers the listeners of a policy while binders are added,
// rules in match order, noting collisions and shadowed rules.
type listenerSet struct {
	byKey  map[listenKey]*Listener
	byPort map[uint16][]listenKey
	// owner is the first binder added to each listener.
	owner map[listenKey]*binder
	// rules are, per listener, the rules added to it so far.
	rules map[listenKey][]*binder
	// shadowed counts, per rule, the ports where earlier rules take all
	// of its clients, and names those rules.
	shadowed map[*binder]*shadow
	// collisions are pairs of binders whose sockets cannot coexist.
	collisions []collision
}

// collision is two binders that want sockets which cannot coexist: the
// same socket for listeners of different kinds (or two intercepts), or
// overlapping addresses on one port.
type collision struct {
	a, b   *binder
	port   uint16
	shared bool // the same address and port
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

// listen builds the listeners for binders, whose rules must be in match
// order, and reports collisions and rules that can never match.
func (d *decoder) listen(binders []*binder) []*Listener {
	set := &listenerSet{
		byKey:    map[listenKey]*Listener{},
		byPort:   map[uint16][]listenKey{},
		owner:    map[listenKey]*binder{},
		rules:    map[listenKey][]*binder{},
		shadowed: map[*binder]*shadow{},
	}
	for _, b := range binders {
		for p := int(b.first); p <= int(b.last); p++ {
			set.add(b, uint16(p))
		}
	}
	d.reportCollisions(set.collisions)
	d.reportUnreachable(set.shadowed)
	return set.sorted()
}

// add puts b on the listener for port, unless its socket collides with
// one already there.
func (s *listenerSet) add(b *binder, port uint16) {
	key := listenKey{port: port, addr: b.addr}
	l := s.byKey[key]
	if l == nil {
		l = s.open(b, key)
		if l == nil {
			return
		}
	} else if owner := s.owner[key]; !sharable(owner, b) {
		s.collisions = append(s.collisions,
			collision{a: owner, b: b, port: port, shared: true})
		return
	}
	if b.src != nil {
		s.addRule(b, key, l)
	}
}

// open makes the listener for key, owned by b, or notes the collision
// that prevents it and returns nil.
func (s *listenerSet) open(b *binder, key listenKey) *Listener {
	if other := s.collider(key); other != nil {
		s.collisions = append(s.collisions, collision{a: other, b: b, port: key.port})
		return nil
	}
	l := &Listener{Addr: listenAddr(key), Port: key.port, Kind: b.kind,
		PortRange: b.portRange}
	if b.kind == ListenIntercept {
		l.Intercept = b.name
	}
	s.byKey[key] = l
	s.byPort[key.port] = append(s.byPort[key.port], key)
	s.owner[key] = b
	return l
}

// sharable reports whether b may join owner's listener: rules of one
// kind share a socket and are matched in order; an intercept shares its
// socket with nothing.
func sharable(owner, b *binder) bool {
	return owner.kind == b.kind && b.kind != ListenIntercept
}

// addRule appends b's rule to l, noting when the rules before it take
// all of its clients on this port.
func (s *listenerSet) addRule(b *binder, key listenKey, l *Listener) {
	if by := hiders(s.rules[key], b.src.rule, key.addr); by != nil {
		s.shadow(b, by)
	}
	s.rules[key] = append(s.rules[key], b)
	l.Rules = append(l.Rules, b.src.rule)
}

// collider returns the owner of a listener on the same port whose
// address cannot be bound beside key's, or nil.
func (s *listenerSet) collider(key listenKey) *binder {
	for _, other := range s.byPort[key.port] {
		if collides(key.addr, other.addr) {
			return s.owner[other]
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

// shadow notes that the rules by hide b on one more port.
func (s *listenerSet) shadow(b *binder, by []*binder) {
	sh := s.shadowed[b]
	if sh == nil {
		sh = &shadow{}
		s.shadowed[b] = sh
	}
	sh.ports++
	for _, e := range by {
		if !slices.Contains(sh.by, e) {
			sh.by = append(sh.by, e)
		}
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

// reportCollisions reports each colliding pair once, at the port of the
// block that comes later in the file.
func (d *decoder) reportCollisions(cs []collision) {
	seen := map[[2]*binder]bool{}
	for _, c := range cs {
		first, second := c.a, c.b
		if first.block.DefRange.Start.Byte > second.block.DefRange.Start.Byte {
			first, second = second, first
		}
		if seen[[2]*binder{first, second}] {
			continue
		}
		seen[[2]*binder{first, second}] = true
		d.errorf(second.portRange, "Listener collides", "%s",
			collisionDetail(c, first, second))
	}
}

// collisionDetail says why first and second cannot both listen on port.
func collisionDetail(c collision, first, second *binder) string {
	if c.shared {
		return fmt.Sprintf("%s and %s cannot share %s; use different ports",
			second, first, listenAddr(listenKey{c.port, second.addr}))
	}
	return fmt.Sprintf("%s on %s collides with %s on %s; %s%s", second,
		listenAddr(listenKey{c.port, second.addr}), first,
		listenAddr(listenKey{c.port, first.addr}), dualStack(first.addr, second.addr),
		collisionHint(first, second))
}

// collisionHint says how to resolve a collision of addresses on a port.
func collisionHint(first, second *binder) string {
	switch {
	case !sharable(first, second):
		return "use different ports"
	case dualStack(first.addr, second.addr) != "":
		return "to tell IPv4 from IPv6 clients, give both rules the same address " +
			"and remote_addresses such as [\"0.0.0.0/0\"] and [\"::/0\"], or give " +
			"each a specific address, or use different ports"
	}
	return "give both the same address or use different ports"
}

// dualStack explains, when a or b is written 0.0.0.0 or ::, that attlsd
// binds it as a wildcard of both families, as Go does for any unspecified
// address: net.Listen("tcp", "0.0.0.0:p") makes the same dual-stack
// socket as "[::]:p" and takes IPv6 clients too. It is "" otherwise.
func dualStack(a, b netip.Addr) string {
	v4 := a == netip.IPv4Unspecified() || b == netip.IPv4Unspecified()
	v6 := a == netip.IPv6Unspecified() || b == netip.IPv6Unspecified()
	switch {
	case v4 && v6:
		return "0.0.0.0 and :: are the same socket, one dual-stack socket on " +
			"every address, IPv4 and IPv6; "
	case v4:
		return "0.0.0.0 is a dual-stack socket on every address, IPv6 included; "
	case v6:
		return ":: is a dual-stack socket on every address, IPv4 included; "
	}
	return ""
}
