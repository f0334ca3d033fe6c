package policy

import (
	"net/netip"
	"slices"
	"strconv"
	"testing"
)

func TestRuleTakes(t *testing.T) {
	limited := &Rule{RemoteAddresses: []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"),
		netip.MustParsePrefix("2001:db8::/32"),
	}}
	tests := []struct {
		name string
		rule *Rule
		addr string
		want bool
	}{
		{"any client, IPv4", &Rule{}, "192.0.2.1", true},
		{"any client, IPv6", &Rule{}, "2001:db8::1", true},
		{"inside IPv4 prefix", limited, "10.1.2.3", true},
		{"IPv4-mapped client", limited, "::ffff:10.1.2.3", true},
		{"outside IPv4 prefix", limited, "11.0.0.1", false},
		{"inside IPv6 prefix", limited, "2001:db8:1::5", true},
		{"outside IPv6 prefix", limited, "2001:db9::1", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.rule.Takes(netip.MustParseAddr(tt.addr)); got != tt.want {
				t.Errorf("got Takes(%s) = %v, want %v", tt.addr, got, tt.want)
			}
		})
	}
}

// matchPolicy has three rules on one port whose file order differs from
// their match order.
const matchPolicy = `
inbound "fallback" {
  port    = 8443
  tls     = false
  backend = "127.0.0.1:9000"
}
inbound "b_office" {
  port             = 8443
  priority         = 50
  remote_addresses = ["10.0.0.0/8"]
  tls              = false
  backend          = "127.0.0.1:9001"
}
inbound "a_lab" {
  port             = 8443
  priority         = 50
  remote_addresses = ["10.9.0.0/16", "192.0.2.0/24"]
  tls              = false
  backend          = "127.0.0.1:9002"
}
inbound "vip" {
  port             = 8443
  priority         = 900
  remote_addresses = ["10.9.9.9"]
  tls              = false
  backend          = "127.0.0.1:9003"
}
`

func TestListenerMatch(t *testing.T) {
	p := parseString(t, t.TempDir(), matchPolicy)
	if len(p.Listeners) != 1 {
		t.Fatalf("got %d listeners, want 1", len(p.Listeners))
	}
	l := p.Listeners[0]
	if l.Addr != ":8443" || l.Port != 8443 {
		t.Errorf("got listener %q port %d, want \":8443\" port 8443", l.Addr, l.Port)
	}
	var order []string
	for _, r := range l.Rules {
		order = append(order, r.Name)
	}
	want := []string{"vip", "a_lab", "b_office", "fallback"}
	if !slices.Equal(order, want) {
		t.Errorf("got rule order %v, want %v", order, want)
	}

	tests := []struct {
		client string
		want   string
	}{
		{"10.9.9.9", "vip"},
		{"10.9.1.1", "a_lab"},    // also in b_office: the name breaks the tie
		{"10.1.1.1", "b_office"}, // not in a_lab
		{"192.0.2.10", "a_lab"},
		{"::ffff:10.9.9.9", "vip"},
		{"203.0.113.5", "fallback"},
		{"2001:db8::1", "fallback"},
	}
	for _, tt := range tests {
		t.Run(tt.client, func(t *testing.T) {
			r := l.Match(netip.MustParseAddr(tt.client))
			if r == nil || r.Name != tt.want {
				t.Errorf("got %v, want rule %q", r, tt.want)
			}
		})
	}
}

func TestListenerMatchNone(t *testing.T) {
	l := &Listener{Rules: []*Rule{{Name: "only", RemoteAddresses: []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8")}}}}
	if r := l.Match(netip.MustParseAddr("192.0.2.1")); r != nil {
		t.Errorf("got rule %q, want nil: attlsd fails closed", r.Name)
	}
}

func TestPolicyOrder(t *testing.T) {
	p := parseString(t, t.TempDir(), matchPolicy+`
inbound "other_port" {
  port     = "7000-7001"
  priority = 60
  tls      = false
  backend  = "127.0.0.1:9004"
}
`)
	var inbound []string
	for _, r := range p.Inbound {
		inbound = append(inbound, r.Name)
	}
	want := []string{"vip", "other_port", "a_lab", "b_office", "fallback"}
	if !slices.Equal(inbound, want) {
		t.Errorf("got Inbound %v, want %v", inbound, want)
	}
	var addrs []string
	for _, l := range p.Listeners {
		addrs = append(addrs, l.Addr)
	}
	if want := []string{":7000", ":7001", ":8443"}; !slices.Equal(addrs, want) {
		t.Errorf("got listeners %v, want %v", addrs, want)
	}
}

// transparentPolicy has overlapping transparent rules whose file order
// differs from their match order: priority high to low, then name.
const transparentPolicy = `
environment "public" {}
intercept "netfilter" {
  port = 15001
}
outbound "catch_all" {
  remote_ports     = "1-65535"
  remote_addresses = "any"
  environment      = "public"
}
outbound "b_dc" {
  remote_ports     = 443
  remote_addresses = ["10.0.0.0/8"]
  priority         = 50
  environment      = "public"
}
outbound "a_lab" {
  remote_ports     = "443-444"
  remote_addresses = ["10.9.0.0/16", "2001:db8::/32"]
  priority         = 50
  environment      = "public"
}
outbound "vip" {
  remote_ports     = "8000-8443"
  remote_addresses = ["10.9.9.9"]
  priority         = 900
  environment      = "public"
}
outbound "web_any" {
  remote_ports     = 443
  remote_addresses = "any"
  priority         = 10
  environment      = "public"
}
`

// TestMatchOriginal matches original destinations against overlapping
// transparent rules: the first in AT-TLS order wins, so a higher priority
// beats a narrower or earlier rule and a tie goes to the name that sorts
// first; port ranges include both ends; "any" takes every address of
// either family.
func TestMatchOriginal(t *testing.T) {
	p := parseString(t, t.TempDir(), transparentPolicy)
	var order []string
	for _, r := range p.Transparent {
		order = append(order, r.Name)
	}
	want := []string{"vip", "a_lab", "b_dc", "web_any", "catch_all"}
	if !slices.Equal(order, want) {
		t.Errorf("got Transparent %v, want %v", order, want)
	}

	tests := []struct {
		name, dst, want string
	}{
		{"highest priority of three", "10.9.9.9:8443", "vip"},
		{"first port of a range", "10.9.9.9:8000", "vip"},
		{"below a range", "10.9.9.9:7999", "catch_all"},
		{"above a range", "10.9.9.9:8444", "catch_all"},
		{"priority tie, name decides", "10.9.1.1:443", "a_lab"},
		{"tie loser alone", "10.1.1.1:443", "b_dc"},
		{"IPv4-mapped destination", "[::ffff:10.1.1.1]:443", "b_dc"},
		{"last port of a range", "10.9.1.1:444", "a_lab"},
		{"address in one rule, port in none of its peers", "10.1.1.1:444", "catch_all"},
		{"any address", "192.0.2.1:443", "web_any"},
		{"IPv6 prefix", "[2001:db8::1]:443", "a_lab"},
		{"any address, other port", "[2001:db8::1]:445", "catch_all"},
		{"any address, IPv6", "[2001:db9::1]:443", "web_any"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := p.MatchOriginal(netip.MustParseAddrPort(tt.dst))
			if r == nil || r.Name != tt.want {
				t.Errorf("got MatchOriginal(%s) = %v, want rule %q", tt.dst, ruleName(r), tt.want)
			}
		})
	}
	t.Run("no rule", func(t *testing.T) {
		without := &Policy{Transparent: p.Transparent[:len(p.Transparent)-1]}
		if r := without.MatchOriginal(netip.MustParseAddrPort("10.1.1.1:444")); r != nil {
			t.Errorf("got rule %q without catch_all, want nil: attlsd fails closed", r.Name)
		}
	})
}

// ruleName is r's name, or "no rule" for nil.
func ruleName(r *Rule) string {
	if r == nil {
		return "no rule"
	}
	return strconv.Quote(r.Name)
}
