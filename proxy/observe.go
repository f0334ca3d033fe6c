package proxy

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/attlsd/attlsd/policy"
)

// Observer hears what happens to connections, for metrics. Its methods
// are called from connection goroutines and must be quick and safe for
// concurrent use. reason values are short labels such as "no_rule",
// "max_connections", "cleartext" or "unknown_authority".
type Observer interface {
	// Opened: a connection matched rule.
	Opened(rule string, dir policy.Direction)
	// Closed: a connection that Opened reported has ended, having
	// delivered in bytes towards the backend or endpoint and out back.
	Closed(rule string, dir policy.Direction, in, out int64)
	// Refused: a connection was turned away before any byte moved, for
	// another reason than a failed handshake. rule may be empty.
	Refused(rule string, dir policy.Direction, reason string)
	// Handshake: a TLS handshake succeeded in d.
	Handshake(dir policy.Direction, d time.Duration)
	// HandshakeFailed: a TLS handshake, or the connect before an
	// outbound one, failed.
	HandshakeFailed(dir policy.Direction, reason string)
}

// nopObserver observes nothing.
type nopObserver struct{}

func (nopObserver) Opened(string, policy.Direction)               {}
func (nopObserver) Closed(string, policy.Direction, int64, int64) {}
func (nopObserver) Refused(string, policy.Direction, string)      {}
func (nopObserver) Handshake(policy.Direction, time.Duration)     {}
func (nopObserver) HandshakeFailed(policy.Direction, string)      {}

// ConnInfo describes a live connection.
type ConnInfo struct {
	ID         string `json:"id"`
	Generation uint64 `json:"generation"`
	Direction  string `json:"direction"`
	Rule       string `json:"rule,omitempty"`
	State      string `json:"state"` // "handshake" until bytes can flow, then "relay"
	Client     string `json:"client"`
	Listener   string `json:"listener"`
	Target     string `json:"target,omitempty"` // inbound: the backend; outbound: the endpoint
	// UpstreamLocal and UpstreamRemote are attlsd's own connection to the
	// backend or endpoint: a backend sees UpstreamLocal as its peer and
	// UpstreamRemote as its own address.
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

// Open returns how many connections are open.
func (s *Server) Open() int {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	return len(s.conns)
}

// limits counts open connections by rule name, across policy
// generations, for max_connections.
type limits struct {
	mu   sync.Mutex
	open map[string]*atomic.Int64
}

// acquire counts one more connection of r, unless r is at its limit.
// Every rule is counted, limited or not, so that a reload that sets a
// limit finds the connections already open.
func (l *limits) acquire(r *policy.Rule) bool {
	n := l.counter(r.Name)
	if v := n.Add(1); r.MaxConnections > 0 && v > int64(r.MaxConnections) {
		n.Add(-1)
		return false
	}
	return true
}

// release undoes an acquire that succeeded.
func (l *limits) release(r *policy.Rule) { l.counter(r.Name).Add(-1) }

func (l *limits) counter(name string) *atomic.Int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open == nil {
		l.open = map[string]*atomic.Int64{}
	}
	n := l.open[name]
	if n == nil {
		n = new(atomic.Int64)
		l.open[name] = n
	}
	return n
}
