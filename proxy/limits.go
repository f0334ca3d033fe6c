package proxy

import (
	"github.com/attlsd/attlsd/policy"
)

// ruleKey names a rule across policy generations. The name is empty for
// connections that no rule took.
type ruleKey struct {
	name string
	dir  policy.Direction
}

// ruleCount is what the server has counted for one rule. Every field only
// grows but open, so metrics read from it never go down.
type ruleCount struct {
	open    int   // connections holding a slot of the rule
	opened  int64 // slots taken
	closed  int64 // slots given back
	in, out int64 // bytes of the connections that gave their slot back
	refused map[string]int64
	failed  map[string]int64 // backend failures
}

// ruleBook holds a ruleCount per rule, guarded by Server.connMu: a
// connection's bytes move from live to closed under the same lock that a
// snapshot takes, so a snapshot counts them exactly once.
//
// Rules are counted by name, across generations, so that a reload that
// sets a limit finds the connections already open. A rule that no longer
// is in the policy is forgotten once its last connection has closed.
type ruleBook struct {
	counts map[ruleKey]*ruleCount
	pruned uint64 // the generation last pruned against
}

// count returns the rule's count, made on first use.
func (b *ruleBook) count(k ruleKey) *ruleCount {
	if b.counts == nil {
		b.counts = map[ruleKey]*ruleCount{}
	}
	n := b.counts[k]
	if n == nil {
		n = &ruleCount{}
		b.counts[k] = n
	}
	return n
}

// prune forgets the rules that g's policy no longer has and that have no
// open connection, once per generation.
func (b *ruleBook) prune(g *generation) {
	if b.pruned == g.n {
		return
	}
	b.pruned = g.n
	keep := ruleKeys(g.policy)
	for k, n := range b.counts {
		if n.open == 0 && k.name != "" && !keep[k] {
			delete(b.counts, k)
		}
	}
}

// ruleKeys returns the keys of every rule of p.
func ruleKeys(p *policy.Policy) map[ruleKey]bool {
	keys := make(map[ruleKey]bool, len(p.Inbound)+len(p.Outbound))
	for _, rs := range [][]*policy.Rule{p.Inbound, p.Outbound} {
		for _, r := range rs {
			keys[ruleKey{r.Name, r.Direction}] = true
		}
	}
	return keys
}

// hasRule reports whether p has the rule k.
func hasRule(p *policy.Policy, k ruleKey) bool {
	for _, rs := range [][]*policy.Rule{p.Inbound, p.Outbound} {
		for _, r := range rs {
			if r.Name == k.name && r.Direction == k.dir {
				return true
			}
		}
	}
	return false
}

// acquire gives c a connection slot of r, unless r is at its
// max_connections, and sets c.rule. Every rule is counted, limited or
// not.
func (s *Server) acquire(c *conn, r *policy.Rule) bool {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	s.rules.prune(s.current.Load())
	n := s.rules.count(ruleKey{r.Name, r.Direction})
	if r.MaxConnections > 0 && n.open >= r.MaxConnections {
		return false
	}
	n.open++
	n.opened++
	c.rule, c.held = r, true
	return true
}

// release gives c's slot back and moves its bytes, final now that its
// relay has ended, into the rule's totals.
func (s *Server) release(c *conn) {
	k := ruleKey{c.rule.Name, c.rule.Direction}
	s.connMu.Lock()
	defer s.connMu.Unlock()
	n := s.rules.count(k)
	n.open--
	n.closed++
	n.in += c.in.Load()
	n.out += c.out.Load()
	c.held = false
	if n.open == 0 && !hasRule(s.current.Load().policy, k) {
		delete(s.rules.counts, k)
	}
}

// refused counts a connection turned away, under its rule (empty for no
// rule) and reason.
func (s *Server) refused(rule string, dir policy.Direction, reason string) {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	n := s.rules.count(ruleKey{rule, dir})
	n.refused = addOne(n.refused, reason)
}

// backendFailed counts an inbound connection whose backend could not be
// reached or written to.
func (s *Server) backendFailed(rule, reason string) {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	n := s.rules.count(ruleKey{rule, policy.Inbound})
	n.failed = addOne(n.failed, reason)
}

// addOne counts one more of key in m, made on first use.
func addOne(m map[string]int64, key string) map[string]int64 {
	if m == nil {
		m = map[string]int64{}
	}
	m[key]++
	return m
}
