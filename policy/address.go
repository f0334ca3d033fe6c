package policy

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// maxPortsPerRule bounds a port range, which costs one socket per port.
const maxPortsPerRule = 1024

// parsePorts parses "8443" or "8443-8445", ports to listen on, so a
// range holds at most maxPortsPerRule ports.
func parsePorts(s string) (first, last uint16, err error) {
	if first, last, err = parsePortRange(s); err != nil {
		return 0, 0, err
	}
	if n := int(last) - int(first) + 1; n > maxPortsPerRule {
		return 0, 0, fmt.Errorf("range %q has %d ports; at most %d are allowed",
			s, n, maxPortsPerRule)
	}
	return first, last, nil
}

// parsePortRange parses "443" or "443-8443" of any length.
func parsePortRange(s string) (first, last uint16, err error) {
	lo, hi, isRange := strings.Cut(s, "-")
	if !isRange {
		first, err = parsePort(s)
		return first, first, err
	}
	if first, err = parsePort(lo); err != nil {
		return 0, 0, fmt.Errorf("range %q: %w", s, err)
	}
	if last, err = parsePort(hi); err != nil {
		return 0, 0, fmt.Errorf("range %q: %w", s, err)
	}
	if first > last {
		return 0, 0, fmt.Errorf("range %q runs backwards", s)
	}
	return first, last, nil
}

// parsePort parses one port number, 1 to 65535.
func parsePort(s string) (uint16, error) {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("port %q is not a number from 1 to 65535", s)
	}
	return uint16(n), nil
}

// parseListenAddress parses a listen IP. IPv4-mapped IPv6 addresses are
// unmapped, so that both spellings share one listener.
func parseListenAddress(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%q is not an IP address; omit address "+
			"to listen on all addresses", s)
	}
	return a.Unmap(), nil
}

// parseRemote parses a CIDR prefix or a single IP, which becomes a /32 or
// /128. Host bits are cleared; IPv4-mapped prefixes become IPv4 ones,
// since Rule.Takes unmaps the client's address.
func parseRemote(s string) (netip.Prefix, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		a = a.Unmap().WithZone("")
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is neither a CIDR prefix such as "+
			"\"10.0.0.0/8\" nor an IP address", s)
	}
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p.Masked(), nil
}

// parseBackend parses "host:port" or "unix:/path"; resolve makes a
// relative socket path absolute. A path starting with "@" names a Linux
// abstract socket and is kept as written.
func parseBackend(s string, resolve func(string) string) (Backend, error) {
	if path, ok := strings.CutPrefix(s, "unix:"); ok {
		if path == "" {
			return Backend{}, errors.New("unix: needs a socket path")
		}
		if !strings.HasPrefix(path, "@") {
			path = resolve(path)
		}
		return Backend{Network: "unix", Address: path}, nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return Backend{}, fmt.Errorf("%q is neither host:port nor unix:/path", s)
	}
	if !validHost(host) {
		return Backend{}, fmt.Errorf("%q has no valid host name or IP address", s)
	}
	if _, err := parsePort(port); err != nil {
		return Backend{}, fmt.Errorf("backend %q: %w", s, err)
	}
	return Backend{Network: "tcp", Address: net.JoinHostPort(host, port)}, nil
}

// validHost accepts an IP address or a DNS name made of letters, digits,
// hyphens, underscores and dots.
func validHost(h string) bool {
	if _, err := netip.ParseAddr(h); err == nil {
		return true
	}
	if h == "" || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(strings.TrimSuffix(h, "."), ".") {
		if label == "" || len(label) > 63 || strings.Trim(label, hostChars) != "" {
			return false
		}
	}
	return true
}

// hostChars are the characters of a DNS label as attlsd accepts it.
const hostChars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"

// parseEndpoint parses an outbound endpoint, "host:port" with an IPv6 host
// in brackets. It returns the endpoint in canonical form and its host
// without brackets.
func parseEndpoint(s string) (endpoint, host string, err error) {
	host, portStr, err := net.SplitHostPort(s)
	if err != nil {
		return "", "", fmt.Errorf("%q is not host:port%s", s, endpointHint(s))
	}
	if !validHost(host) {
		return "", "", fmt.Errorf("%q has no valid host name or IP address", s)
	}
	port, err := parsePort(portStr)
	if err != nil {
		return "", "", fmt.Errorf("endpoint %q: %w", s, err)
	}
	return net.JoinHostPort(host, strconv.Itoa(int(port))), host, nil
}

// endpointHint guesses why s is not host:port.
func endpointHint(s string) string {
	switch {
	case strings.Contains(s, "://"):
		return "; leave out the scheme"
	case strings.Count(s, ":") > 1:
		return "; an IPv6 host goes in brackets, as in \"[2001:db8::1]:443\""
	}
	return ""
}

// serverNameOf is the name verified for a host: the host itself, or an IP
// literal without its zone, which no certificate names.
func serverNameOf(host string) string {
	if a, err := netip.ParseAddr(host); err == nil {
		return a.WithZone("").String()
	}
	return host
}

// checkServerName accepts a DNS name or an IP address without a zone.
func checkServerName(s string) error {
	if a, err := netip.ParseAddr(s); err == nil {
		if a.Zone() != "" {
			return fmt.Errorf("%q has a zone, which no certificate names", s)
		}
		return nil
	}
	if !validHost(s) {
		return fmt.Errorf("%q is neither a DNS name nor an IP address", s)
	}
	return nil
}
