package policy

import (
	"net/netip"
	"path/filepath"
	"testing"
)

func TestParsePorts(t *testing.T) {
	tests := []struct {
		in          string
		first, last uint16
		wantErr     bool
	}{
		{"8443", 8443, 8443, false},
		{"1", 1, 1, false},
		{"65535", 65535, 65535, false},
		{"8443-8445", 8443, 8445, false},
		{"8443-8443", 8443, 8443, false},
		{"1000-2023", 1000, 2023, false},
		{"1000-2024", 0, 0, true},
		{"8445-8443", 0, 0, true},
		{"0", 0, 0, true},
		{"65536", 0, 0, true},
		{"-8443", 0, 0, true},
		{"8443-", 0, 0, true},
		{" 8443", 0, 0, true},
		{"8443-8444-8445", 0, 0, true},
		{"", 0, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			first, last, err := parsePorts(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("got error %v, want error %v", err, tt.wantErr)
			}
			if first != tt.first || last != tt.last {
				t.Errorf("got %d-%d, want %d-%d", first, last, tt.first, tt.last)
			}
		})
	}
}

func TestParseRemote(t *testing.T) {
	tests := []struct {
		in, want string // want "" means an error
	}{
		{"10.0.0.0/8", "10.0.0.0/8"},
		{"10.1.2.3/8", "10.0.0.0/8"},
		{"192.0.2.7", "192.0.2.7/32"},
		{"2001:db8::1", "2001:db8::1/128"},
		{"2001:db8::1/32", "2001:db8::/32"},
		{"::ffff:10.0.0.1", "10.0.0.1/32"},
		{"::ffff:10.0.0.0/104", "10.0.0.0/8"},
		{"fe80::1%eth0", "fe80::1/128"},
		{"10.0.0.0/33", ""},
		{"example.com", ""},
		{"", ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseRemote(tt.in)
			if tt.want == "" {
				if err == nil {
					t.Errorf("got %v, want an error", got)
				}
				return
			}
			if err != nil || got != netip.MustParsePrefix(tt.want) {
				t.Errorf("got %v, %v, want %s", got, err, tt.want)
			}
		})
	}
}

func TestParseBackend(t *testing.T) {
	resolve := func(p string) string {
		if filepath.IsAbs(p) {
			return p
		}
		return filepath.Join("/base", p)
	}
	tests := []struct {
		in      string
		want    Backend
		wantErr bool
	}{
		{"127.0.0.1:9080", Backend{"tcp", "127.0.0.1:9080"}, false},
		{"app.internal:80", Backend{"tcp", "app.internal:80"}, false},
		{"[::1]:9080", Backend{"tcp", "[::1]:9080"}, false},
		{"unix:/run/app.sock", Backend{"unix", "/run/app.sock"}, false},
		{"unix:app.sock", Backend{"unix", "/base/app.sock"}, false},
		{"unix:@abstract", Backend{"unix", "@abstract"}, false},
		{"unix:", Backend{}, true},
		{"localhost", Backend{}, true},
		{":9080", Backend{}, true},
		{"host:0", Backend{}, true},
		{"host:http", Backend{}, true},
		{"bad host:80", Backend{}, true},
		{"a..b:80", Backend{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseBackend(tt.in, resolve)
			if (err != nil) != tt.wantErr {
				t.Fatalf("got error %v, want error %v", err, tt.wantErr)
			}
			if !tt.wantErr && got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestCollides(t *testing.T) {
	tests := []struct {
		a, b string // "" is all addresses
		want bool
	}{
		{"", "127.0.0.1", true},
		{"0.0.0.0", "::", true},
		{"0.0.0.0", "127.0.0.1", true},
		{"::", "::1", true},
		{"127.0.0.1", "::1", false},
		{"127.0.0.1", "127.0.0.2", false},
	}
	for _, tt := range tests {
		t.Run(tt.a+"/"+tt.b, func(t *testing.T) {
			if got := collides(addr(tt.a), addr(tt.b)); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

// addr parses s, or returns the zero Addr for "".
func addr(s string) netip.Addr {
	if s == "" {
		return netip.Addr{}
	}
	return netip.MustParseAddr(s)
}
