package certs

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// CheckHost returns an error naming host unless it can go into a server
// certificate: an IP address without a zone, or a DNS name of letters,
// digits and hyphens in dot-separated labels, optionally with "*." first
// for a wildcard.
func CheckHost(host string) error {
	if a, err := netip.ParseAddr(host); err == nil {
		if a.Zone() != "" {
			return fmt.Errorf("host %q has a zone, which a certificate cannot name", host)
		}
		return nil
	}
	if why := dnsNameProblem(host); why != "" {
		return fmt.Errorf("host %q %s", host, why)
	}
	return nil
}

// dnsNameProblem says why name is no DNS name for a certificate, or is
// "" when it is one.
func dnsNameProblem(name string) string {
	labels := strings.Split(strings.TrimPrefix(name, "*."), ".")
	last := labels[len(labels)-1]
	switch {
	case name == "":
		return "is empty"
	case strings.Contains(name, "://"):
		return "is a URL; give the host name alone"
	case strings.Contains(name, ":"):
		return "is not a valid IPv6 address, and a DNS name has no colon"
	case strings.Trim(last, "0123456789") == "" && last != "":
		return "is not a valid IPv4 address"
	case len(name) > 253:
		return "is longer than 253 bytes"
	}
	for _, l := range labels {
		if !validLabel(l) {
			return "is neither an IP address nor a DNS name (letters, digits and " +
				"hyphens in dot-separated labels, optionally \"*.\" first)"
		}
	}
	return ""
}

// validLabel reports whether l is a DNS label: 1 to 63 letters, digits
// and hyphens, neither first nor last a hyphen (RFC 1123 section 2.1).
func validLabel(l string) bool {
	if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
		return false
	}
	return strings.Trim(l, letterDigitHyphen) == ""
}

// letterDigitHyphen are the characters of a DNS label.
const letterDigitHyphen = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-"

// checkHosts returns every host CheckHost refuses, joined.
func checkHosts(hosts []string) error {
	var errs []error
	for _, h := range hosts {
		if err := CheckHost(h); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
