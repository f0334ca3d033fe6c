package policy

import (
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
)

var update = flag.Bool("update", false, "rewrite the .golden files in testdata")

// TestGolden parses every testdata/*.hcl policy and compares the
// diagnostics, and for a valid policy a summary of it, with the .golden
// file beside it. Paths under the temporary folder print as $DIR.
func TestGolden(t *testing.T) {
	dir := testDir(t)
	files, err := filepath.Glob("testdata/*.hcl")
	if err != nil || len(files) == 0 {
		t.Fatalf("got %d policies in testdata (%v), want some", len(files), err)
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".hcl")
		t.Run(name, func(t *testing.T) {
			src, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			p, diags := Parse(src, filepath.ToSlash(file), dir)
			got := strings.ReplaceAll(render(p, diags), dir, "$DIR")
			compareGolden(t, strings.TrimSuffix(file, ".hcl")+".golden", got)
		})
	}
}

// compareGolden checks got against a golden file, or rewrites the file
// under -update.
func compareGolden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./policy -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}

// render is the golden text: the diagnostics, then what a valid policy
// holds: environments, listeners with their rules, then the outbound match
// order and the transparent rules.
func render(p *Policy, diags hcl.Diagnostics) string {
	var b strings.Builder
	b.WriteString(FormatDiagnostics(diags))
	if p == nil {
		return b.String()
	}
	b.WriteString("-- policy --\n")
	for _, e := range p.Environments {
		renderEnvironment(&b, e)
	}
	for _, l := range p.Listeners {
		renderListener(&b, l)
	}
	if len(p.Outbound) > 0 {
		fmt.Fprintf(&b, "outbound order %s\n", ruleNames(p.Outbound))
	}
	if len(p.Transparent) > 0 {
		b.WriteString("transparent\n")
	}
	for _, r := range p.Transparent {
		renderRule(&b, r)
	}
	return b.String()
}

// renderEnvironment writes one line per environment.
func renderEnvironment(b *strings.Builder, e *Environment) {
	fmt.Fprintf(b, "environment %s cert=%s key=%s trust=%v versions=%#x-%#x",
		e.Name, e.CertFile, e.KeyFile, e.TrustFiles, e.MinVersion, e.MaxVersion)
	fmt.Fprintf(b, " suites=%#x curves=%v alpn=%q timeout=%s\n",
		e.CipherSuites, e.Curves, e.ALPN, e.HandshakeTimeout)
}

// renderListener writes a listener's line, then one line per rule.
func renderListener(b *strings.Builder, l *Listener) {
	fmt.Fprintf(b, "listener %s %s", l.Addr, l.Kind)
	if l.Intercept != "" {
		fmt.Fprintf(b, " %s", l.Intercept)
	}
	b.WriteByte('\n')
	for _, r := range l.Rules {
		renderRule(b, r)
	}
}

// renderRule writes one line for a rule.
func renderRule(b *strings.Builder, r *Rule) {
	if r.Direction == Outbound {
		renderOutbound(b, r)
		return
	}
	fmt.Fprintf(b, "  rule %s priority=%d ports=%d-%d address=%s remote=%v",
		r.Name, r.Priority, r.FirstPort, r.LastPort, addrString(r.Address),
		r.RemoteAddresses)
	env := "-"
	if r.Environment != nil {
		env = r.Environment.Name
	}
	fmt.Fprintf(b, " tls=%v env=%s client_auth=%s backend=%s/%s proxy=%s",
		r.TLS, env, r.ClientAuth, r.Backend.Network, r.Backend.Address, r.ProxyProtocol)
	renderLimits(b, r)
}

// renderLimits ends a rule's line with its connection limits.
func renderLimits(b *strings.Builder, r *Rule) {
	fmt.Fprintf(b, " connect_timeout=%s max=%d idle=%s half_close=%s\n", r.ConnectTimeout,
		r.MaxConnections, r.IdleTimeout, r.HalfCloseTimeout)
}

// renderOutbound writes one line for an outbound rule, port-mapped or
// transparent.
func renderOutbound(b *strings.Builder, r *Rule) {
	fmt.Fprintf(b, "  outbound %s priority=%d", r.Name, r.Priority)
	if r.Transparent() {
		remote := fmt.Sprint(r.RemoteAddresses)
		if r.AnyRemote {
			remote = "any"
		}
		fmt.Fprintf(b, " remote_ports=%d-%d remote=%s", r.FirstRemotePort,
			r.LastRemotePort, remote)
	} else {
		fmt.Fprintf(b, " ports=%d-%d address=%s endpoint=%s", r.FirstPort,
			r.LastPort, addrString(r.Address), r.Endpoint)
	}
	fmt.Fprintf(b, " server_name=%q env=%s", r.ServerName, r.Environment.Name)
	renderLimits(b, r)
}

// addrString prints a listen address, "all" when it is the zero Addr.
func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return "all"
	}
	return a.String()
}

// ruleNames lists the rules' names, space-separated.
func ruleNames(rules []*Rule) string {
	names := make([]string, len(rules))
	for i, r := range rules {
		names[i] = r.Name
	}
	return strings.Join(names, " ")
}
