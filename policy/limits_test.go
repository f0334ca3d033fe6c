package policy

import (
	"slices"
	"strings"
	"testing"
)

// TestDiffLimits: changing a limit changes the rule, so that a reload
// reports it; leaving a limit at its default does not.
func TestDiffLimits(t *testing.T) {
	dir := testDir(t)
	const rule = `
environment "public" {
}
outbound "api" {
  port        = 15003
  endpoint    = "api.example.com:443"
  environment = "public"
%s}
`
	base := parseString(t, dir, strings.Replace(rule, "%s", "", 1))
	tests := []struct {
		name, attr string
		changed    bool
	}{
		{"default written out", `  half_close_timeout = "60s"` + "\n", false},
		{"max_connections", "  max_connections = 10\n", true},
		{"idle_timeout", `  idle_timeout = "5m"` + "\n", true},
		{"half_close_timeout", `  half_close_timeout = "61s"` + "\n", true},
		{"write_timeout default written out", `  write_timeout = "60s"` + "\n", false},
		{"write_timeout", `  write_timeout = "2m"` + "\n", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			next := parseString(t, dir, strings.Replace(rule, "%s", tt.attr, 1))
			c := Diff(base, next)
			if got := slices.Equal(c.Changed, []string{"api"}); got != tt.changed {
				t.Errorf("changed: got %v (%+v), want %v", got, c, tt.changed)
			}
		})
	}
}
