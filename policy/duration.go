package policy

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
)

// maxDurations bound each duration attribute: far above any useful
// value, so that a slip such as "100000000h" or "30000h" is caught at
// load instead of meaning "never".
var maxDurations = map[string]time.Duration{
	"handshake_timeout":  time.Hour,
	"connect_timeout":    time.Hour,
	"idle_timeout":       365 * 24 * time.Hour,
	"half_close_timeout": 365 * 24 * time.Hour,
	"write_timeout":      365 * 24 * time.Hour,
}

// durationSyntax matches what time.ParseDuration reads, whatever the
// size: a sign, then numbers each with a unit.
var durationSyntax = regexp.MustCompile(
	`^[-+]?(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+$`)

// errNotAboveZero is wrapped by parseDuration's error for a duration of
// zero or less.
var errNotAboveZero = errors.New("is not above zero")

// duration decodes a Go duration above zero and at most the attribute's
// maxDurations entry, or returns def when attr is absent or invalid. hint
// ends the message about a value that is not above zero.
func (d *decoder) duration(attr *hcl.Attribute, def time.Duration, hint string) time.Duration {
	if attr == nil {
		return def
	}
	s, ok := d.str(attr)
	if !ok {
		return def
	}
	t, err := parseDuration(s, maxDurations[attr.Name])
	if err == nil {
		return t
	}
	msg := err.Error()
	if errors.Is(err, errNotAboveZero) && hint != "" {
		msg += "; " + hint
	}
	d.errorf(attr.Expr.Range(), "Invalid "+attr.Name, "%s", msg)
	return def
}

// parseDuration parses a duration above zero and at most max. A number
// too large for time.Duration, which time.ParseDuration refuses as it
// refuses bad syntax, is reported as too long.
func parseDuration(s string, max time.Duration) (time.Duration, error) {
	t, err := time.ParseDuration(s)
	switch {
	case err != nil && !durationSyntax.MatchString(s):
		return 0, fmt.Errorf("%q is not a duration such as \"10s\" or \"1m30s\"", s)
	case err != nil && strings.HasPrefix(s, "-"), err == nil && t <= 0:
		return 0, fmt.Errorf("%q %w", s, errNotAboveZero)
	case err != nil, t > max:
		return 0, fmt.Errorf("%q is longer than the maximum, %s", s, maxText(max))
	}
	return t, nil
}

// maxText writes a maximum duration, in days too when it is a year.
func maxText(max time.Duration) string {
	s := formatDuration(max)
	if days := max / (24 * time.Hour); days >= 2 {
		s += fmt.Sprintf(" (%d days)", days)
	}
	return s
}
