package policy

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
)

// keyWidth is the width of the key column in WriteText; the longest
// key, half_close_timeout, fits with two spaces to spare.
const keyWidth = 20

// WriteText writes v for people, like z/OS pasearch: environments, then
// inbound and outbound rules in match order, intercepts and listeners,
// one setting a line with keys aligned and every default spelled out.
func (v View) WriteText(w io.Writer) error {
	t := &textWriter{w: w}
	t.line("policy %s", v.File)
	t.section("Environments, in file order", len(v.Environments))
	for _, e := range v.Environments {
		t.environment(e)
	}
	t.section("Inbound rules, in match order", len(v.Inbound))
	for i, r := range v.Inbound {
		t.inbound(i+1, r)
	}
	t.section("Outbound rules, in match order", len(v.Outbound))
	for i, r := range v.Outbound {
		t.outbound(i+1, r)
	}
	t.section("Intercepts, by port", len(v.Intercepts))
	for _, ic := range v.Intercepts {
		t.line("  %-*s %s", keyWidth, ic.Name, hostPort(ic.Address, ic.Port))
	}
	t.section("Listeners, by port", len(v.Listeners))
	t.listeners(v.Listeners)
	return t.err
}

// textWriter writes lines and keeps the first error.
type textWriter struct {
	w   io.Writer
	err error
}

// line writes one formatted line, each string argument printable.
func (t *textWriter) line(format string, args ...any) {
	for i, a := range args {
		if s, ok := a.(string); ok {
			args[i] = printable(s)
		}
	}
	if t.err == nil {
		_, t.err = fmt.Fprintf(t.w, format+"\n", args...)
	}
}

// section writes a heading after a blank line, and "none" when the
// section is empty.
func (t *textWriter) section(title string, n int) {
	t.line("")
	t.line("%s", title)
	if n == 0 {
		t.line("  none")
	}
}

// field writes a key and its values, indented by indent: the first value
// beside the key, the others below it in the value column.
func (t *textWriter) field(indent int, key string, values ...string) {
	pad := strings.Repeat(" ", indent)
	width := keyWidth + 4 - indent
	if len(values) == 0 {
		values = []string{"none"}
	}
	t.line("%s%-*s %s", pad, width, key, values[0])
	for _, v := range values[1:] {
		t.line("%s%-*s %s", pad, width, "", v)
	}
}

// environment writes one environment.
func (t *textWriter) environment(e EnvironmentView) {
	t.line("")
	t.line("  %s", e.Name)
	if c := e.Certificate; c != nil {
		t.field(4, "certificate", c.File)
		t.field(6, "subject", c.Subject)
		t.field(6, "issuer", c.Issuer)
		t.field(6, "serial", c.Serial)
		t.field(6, "not_before", c.NotBefore)
		t.field(6, "not_after", c.NotAfter)
		t.field(6, "dns_names", c.DNSNames...)
		t.field(6, "ip_addresses", c.IPs...)
		t.field(6, "intermediates", c.Intermediates...)
		t.field(4, "private_key", c.PrivateKey)
	} else {
		t.field(4, "certificate", "none (outbound: no client certificate is presented)")
	}
	if len(e.Trust) == 0 {
		t.field(4, "trust", "none (inbound: client certificates are not verified; "+
			"outbound: the system roots)")
	} else {
		t.field(4, "trust", e.Trust...)
	}
	t.field(4, "tls_versions", strings.Join(e.TLSVersions, ", "))
	t.field(4, "cipher_suites", suitesText(e)...)
	if e.CurvesDefault {
		t.field(4, "curves", "Go's defaults")
	} else {
		t.field(4, "curves", e.Curves...)
	}
	t.field(4, "alpn", e.ALPN...)
	t.field(4, "handshake_timeout", e.HandshakeTimeout)
}

// inbound writes the n-th inbound rule.
func (t *textWriter) inbound(n int, r InboundView) {
	t.line("")
	t.line("  %d. %s", n, r.Name)
	t.field(4, "priority", fmt.Sprint(r.Priority))
	t.field(4, "port", r.Port)
	t.field(4, "address", address(r.Address))
	t.field(4, "remote_addresses", remoteText(r.RemoteAddresses)...)
	t.field(4, "tls", fmt.Sprint(r.TLS))
	env := "none (cleartext)"
	if r.Environment != nil {
		env = *r.Environment
	}
	t.field(4, "environment", env)
	t.field(4, "client_auth", r.ClientAuth)
	t.field(4, "backend", r.Backend)
	t.field(4, "proxy_protocol", r.ProxyProtocol)
	t.limits(r.LimitsView)
}

// outbound writes the n-th outbound rule.
func (t *textWriter) outbound(n int, r OutboundView) {
	t.line("")
	t.line("  %d. %s (%s)", n, r.Name, r.Mode)
	t.field(4, "priority", fmt.Sprint(r.Priority))
	serverName := "none (the original destination's IP is verified against " +
		"the certificate's IP SANs)"
	if r.ServerName != nil {
		serverName = *r.ServerName
	}
	if r.Mode == ModeTransparent {
		t.field(4, "remote_ports", r.RemotePorts)
		t.field(4, "remote_addresses", remoteText(*r.RemoteAddresses)...)
	} else {
		t.field(4, "port", r.Port)
		t.field(4, "address", address(r.Address))
		t.field(4, "endpoint", r.Endpoint)
	}
	t.field(4, "server_name", serverName)
	t.field(4, "environment", r.Environment)
	t.limits(r.LimitsView)
}

// limits writes a rule's limits.
func (t *textWriter) limits(l LimitsView) {
	maxConns := "unlimited"
	if l.MaxConnections != nil {
		maxConns = fmt.Sprint(*l.MaxConnections)
	}
	idle := "none (idle connections stay open)"
	if l.IdleTimeout != nil {
		idle = *l.IdleTimeout
	}
	t.field(4, "connect_timeout", l.ConnectTimeout)
	t.field(4, "max_connections", maxConns)
	t.field(4, "idle_timeout", idle)
	t.field(4, "half_close_timeout", l.HalfCloseTimeout)
	t.field(4, "write_timeout", l.WriteTimeout)
}

// listeners writes one line per listener: address, kind, then its rules
// in match order.
func (t *textWriter) listeners(ls []ListenerView) {
	addrs, kinds := make([]string, len(ls)), make([]string, len(ls))
	addrWidth, kindWidth := 0, 0
	for i, l := range ls {
		addrs[i] = hostPort(l.Address, l.Port)
		kinds[i] = l.Kind
		if l.Intercept != "" {
			kinds[i] += " " + l.Intercept
		}
		addrWidth = max(addrWidth, len(addrs[i]))
		kindWidth = max(kindWidth, len(kinds[i]))
	}
	for i, l := range ls {
		rules := strings.Join(l.Rules, ", ")
		if rules == "" {
			rules = "none"
		}
		t.line("  %-*s  %-*s  %s", addrWidth, addrs[i], kindWidth, kinds[i], rules)
	}
}

// printable returns s quoted, escapes and all, when it holds a
// character that names may not hold (see forbiddenRune), and s as it is
// otherwise. A policy's names never hold one, but a path or a
// certificate's subject may: a newline or a terminal escape in it would
// forge or hide lines of the output.
func printable(s string) string {
	if _, i := forbiddenRune(s); i >= 0 {
		return strconv.Quote(s)
	}
	return s
}

// suitesText lists an environment's TLS 1.2 suites, or says that they
// are the default, and whether they apply at all.
func suitesText(e EnvironmentView) []string {
	const tls13 = "TLS 1.3 suites are always Go's"
	switch {
	case !e.CipherSuitesApply && e.CipherSuitesDefault:
		return []string{"do not apply: tls_versions leaves out TLS 1.2, and " + tls13}
	case !e.CipherSuitesApply:
		return append(slices.Clone(e.CipherSuites),
			"(unused: tls_versions leaves out TLS 1.2, and "+tls13+")")
	case e.CipherSuitesDefault:
		return []string{"the default: ECDHE with AES-GCM or ChaCha20-Poly1305",
			"(TLS 1.2 only; " + tls13 + ")"}
	}
	return append(slices.Clone(e.CipherSuites), "(TLS 1.2 only; "+tls13+")")
}

// address writes a listen address, saying what "all" means, and that
// 0.0.0.0 and :: mean the same (see dualStack).
func address(a string) string {
	switch a {
	case "all":
		return "all (IPv4 and IPv6)"
	case "0.0.0.0", "::":
		return a + " (all addresses, IPv4 and IPv6: one dual-stack socket)"
	}
	return a
}

// remoteText lists r's prefixes, or "any".
func remoteText(r Remote) []string {
	if r.Any {
		return []string{"any"}
	}
	return r.Prefixes
}

// hostPort writes an address and port as "127.0.0.1:8443", "[::1]:8443",
// or "*:8443" for all addresses.
func hostPort(addr, port string) string {
	switch {
	case addr == "all":
		addr = "*"
	case strings.Contains(addr, ":"):
		addr = "[" + addr + "]"
	}
	return addr + ":" + port
}
