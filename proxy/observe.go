package proxy

import (
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/attlsd/attlsd/policy"
)

// Observer hears of TLS handshakes, for metrics. Its methods are called
// from connection goroutines and must be quick and safe for concurrent
// use. reason values are short labels such as "cleartext" or
// "unknown_authority". What is counted per rule is read with RuleStats.
type Observer interface {
	// Handshake: a TLS handshake succeeded in d.
	Handshake(dir policy.Direction, d time.Duration)
	// HandshakeFailed: a TLS handshake, or the connect before an
	// outbound one, failed.
	HandshakeFailed(dir policy.Direction, reason string)
}

// nopObserver observes nothing.
type nopObserver struct{}

func (nopObserver) Handshake(policy.Direction, time.Duration) {}
func (nopObserver) HandshakeFailed(policy.Direction, string)  {}

// ConnInfo describes a live connection.
type ConnInfo struct {
	ID         string `json:"id"`
	Generation uint64 `json:"generation"`
	Direction  string `json:"direction"`
	Rule       string `json:"rule,omitempty"`
	// State is "handshake" while an inbound client's TLS handshake runs,
	// "connecting" while attlsd connects to the backend (outbound: to
	// the endpoint, TLS handshake included), then "relay".
	State    string `json:"state"`
	Client   string `json:"client"`
	Listener string `json:"listener"`
	Target   string `json:"target,omitempty"` // inbound: the backend; outbound: the endpoint
	// UpstreamLocal and UpstreamRemote are attlsd's own connection to the
	// backend or endpoint: a backend sees UpstreamLocal as its peer and
	// UpstreamRemote as its own address. They are set as soon as that
	// connection exists, before attlsd writes anything to it.
	UpstreamLocal  string    `json:"upstream_local,omitempty"`
	UpstreamRemote string    `json:"upstream_remote,omitempty"`
	TLSVersion     string    `json:"tls_version,omitempty"`
	Cipher         string    `json:"cipher,omitempty"`
	SNI            string    `json:"sni,omitempty"`
	ALPN           string    `json:"alpn,omitempty"`
	BytesIn        int64     `json:"bytes_in"`
	BytesOut       int64     `json:"bytes_out"`
	Start          time.Time `json:"start"`
	AgeSeconds     float64   `json:"age_seconds"`
}

// Connections returns the live connections, oldest first.
func (s *Server) Connections() []ConnInfo {
	s.connMu.Lock()
	out := make([]ConnInfo, 0, len(s.conns))
	for c := range s.conns {
		out = append(out, c.snapshot())
	}
	s.connMu.Unlock()
	slices.SortFunc(out, func(a, b ConnInfo) int { return a.Start.Compare(b.Start) })
	return out
}

// Connecting returns how many connections are connecting to their
// backend or endpoint, and a channel that is closed as soon as one of
// them gets there (its upstream addresses are then in Connections) or
// ends. Ask before reading Connections, so that nothing is missed in
// between.
func (s *Server) Connecting() (int, <-chan struct{}) {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	return s.connecting, s.settled
}

// Open returns how many connections are open.
func (s *Server) Open() int {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	return len(s.conns)
}

// RuleStats is what the server has counted for one rule since it started.
// Every count but Active only grows, from one call to the next.
type RuleStats struct {
	// Rule is empty for the connections that no rule took; only Refused
	// counts those.
	Rule      string
	Direction string
	Active    int   // connections open now
	Opened    int64 // connections that took a slot of the rule
	Closed    int64 // of those, the ones that have ended
	// BytesIn and BytesOut are the bytes delivered towards the backend
	// or endpoint and back, by open connections and closed ones.
	BytesIn  int64
	BytesOut int64
	// Refused counts connections turned away by reason, such as
	// "no_rule" or "max_connections".
	Refused map[string]int64
	// BackendFailures counts inbound connections whose backend could not
	// be reached or written to, by reason, such as "connect_refused".
	BackendFailures map[string]int64
}

// RuleStats returns a consistent snapshot of the per-rule counts: every
// rule of the current policy, counted or not, then rules that a reload
// removed while they still have open connections, and the refusals that
// no rule took. Sorted by direction, then rule.
func (s *Server) RuleStats() []RuleStats {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	g := s.current.Load()
	s.rules.prune(g)
	byKey := map[ruleKey]*RuleStats{}
	for k := range ruleKeys(g.policy) {
		byKey[k] = &RuleStats{Rule: k.name, Direction: k.dir.String()}
	}
	for k, n := range s.rules.counts {
		st := byKey[k]
		if st == nil {
			st = &RuleStats{Rule: k.name, Direction: k.dir.String()}
			byKey[k] = st
		}
		st.Active, st.Opened, st.Closed = n.open, n.opened, n.closed
		st.BytesIn, st.BytesOut = n.in, n.out
		st.Refused, st.BackendFailures = maps.Clone(n.refused), maps.Clone(n.failed)
	}
	for c := range s.conns {
		if c.held {
			st := byKey[ruleKey{c.rule.Name, c.rule.Direction}]
			st.BytesIn += c.in.Load()
			st.BytesOut += c.out.Load()
		}
	}
	return sortedStats(byKey)
}

func sortedStats(m map[ruleKey]*RuleStats) []RuleStats {
	out := make([]RuleStats, 0, len(m))
	for _, st := range m {
		out = append(out, *st)
	}
	slices.SortFunc(out, func(a, b RuleStats) int {
		if d := strings.Compare(a.Direction, b.Direction); d != 0 {
			return d
		}
		return strings.Compare(a.Rule, b.Rule)
	})
	return out
}
