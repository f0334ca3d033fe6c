package policy

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"slices"
)

// envDigest sums what makes an environment's TLS behaviour: its settings
// and the DER of every certificate it loaded. Paths are left out: the same
// certificate moved to another file is the same environment.
func envDigest(env *Environment) [32]byte {
	h := sha256.New()
	fmt.Fprintf(h, "versions %x-%x\nsuites %v\ncurves %v\nalpn %q\ntimeout %s\n",
		env.MinVersion, env.MaxVersion, env.CipherSuites, env.Curves, env.ALPN,
		env.HandshakeTimeout)
	if env.Pair != nil {
		for _, der := range env.Pair.Cert.Certificate {
			writeBlob(h, "cert", der)
		}
	}
	for _, c := range env.trusted {
		writeBlob(h, "trust", c.Raw)
	}
	return [32]byte(h.Sum(nil))
}

// ruleDigest sums a rule's settings and its environment's digest.
func ruleDigest(r *Rule) [32]byte {
	h := sha256.New()
	fmt.Fprintf(h, "%s %d %d %d-%d %v %v tls=%t auth=%d backend=%s proxy=%d\n",
		r.Name, r.Priority, r.Direction, r.FirstPort, r.LastPort, r.Address,
		r.RemoteAddresses, r.TLS, r.ClientAuth, r.Backend, r.ProxyProtocol)
	fmt.Fprintf(h, "endpoint=%s name=%q remote=%d-%d any=%t connect=%s\n",
		r.Endpoint, r.ServerName, r.FirstRemotePort, r.LastRemotePort, r.AnyRemote,
		r.ConnectTimeout)
	fmt.Fprintf(h, "max=%d idle=%s half_close=%s write=%s\n", r.MaxConnections,
		r.IdleTimeout, r.HalfCloseTimeout, r.WriteTimeout)
	if r.Environment != nil {
		h.Write(r.Environment.Digest[:])
	}
	return [32]byte(h.Sum(nil))
}

// policyDigest sums the policy text and what its environments loaded.
func policyDigest(src []byte, envs []*Environment) [32]byte {
	h := sha256.New()
	writeBlob(h, "policy", src)
	for _, env := range envs {
		writeBlob(h, env.Name, env.Digest[:])
	}
	return [32]byte(h.Sum(nil))
}

// writeBlob writes a labelled, length-prefixed blob, so that no two
// sequences of blobs hash alike.
func writeBlob(w io.Writer, label string, b []byte) {
	fmt.Fprintf(w, "%s %d\n", label, len(b))
	w.Write(b)
}

// tlsKey sums what shapes a rule's TLS configuration: its environment's
// Digest and direction, and the rule's client_auth (inbound) or
// server_name (outbound). The backend, ports, limits and priority play no
// part, so changing them keeps the configuration.
func tlsKey(r *Rule) [32]byte {
	h := sha256.New()
	h.Write(r.Environment.Digest[:])
	fmt.Fprintf(h, "%d auth=%d name=%q\n", r.Direction, r.ClientAuth, r.ServerName)
	return [32]byte(h.Sum(nil))
}

// Inherit gives every TLS rule of p prev's configuration of the same key
// (see tlsKey), when prev has one. An environment whose content did not
// change keeps its session ticket keys that way (inbound), and its
// session cache (outbound), so a reload does not cost clients their
// resumption. A changed certificate or trust bundle changes the key: no
// session of the old settings is resumed under the new ones.
func (p *Policy) Inherit(prev *Policy) {
	if prev == nil {
		return
	}
	for _, r := range p.rules() {
		if c := prev.configs[r.configKey]; c != nil && r.TLSConfig != nil {
			r.TLSConfig = c
			p.configs[r.configKey] = c
		}
	}
}

// Changes lists what a reload changed, by rule and environment name.
type Changes struct {
	Added, Removed, Changed []string // rules
	Rotated                 []string // environments whose certificate changed
}

// Empty reports whether nothing changed.
func (c Changes) Empty() bool {
	return len(c.Added)+len(c.Removed)+len(c.Changed)+len(c.Rotated) == 0
}

// Diff lists what changed from prev to next. prev may be nil.
func Diff(prev, next *Policy) Changes {
	var c Changes
	old := map[string]*Rule{}
	oldEnv := map[string]*Environment{}
	if prev != nil {
		old = prev.rulesByName()
		for _, env := range prev.Environments {
			oldEnv[env.Name] = env
		}
	}
	seen := map[string]bool{}
	for _, r := range next.rules() {
		seen[r.Name] = true
		switch o := old[r.Name]; {
		case o == nil:
			c.Added = append(c.Added, r.Name)
		case o.digest != r.digest:
			c.Changed = append(c.Changed, r.Name)
		}
	}
	for name := range old {
		if !seen[name] {
			c.Removed = append(c.Removed, name)
		}
	}
	for _, env := range next.Environments {
		if o := oldEnv[env.Name]; o != nil && !bytes.Equal(leaf(o), leaf(env)) {
			c.Rotated = append(c.Rotated, env.Name)
		}
	}
	slices.Sort(c.Added)
	slices.Sort(c.Removed)
	slices.Sort(c.Changed)
	return c
}

// leaf returns the DER of env's own certificate, or nil.
func leaf(env *Environment) []byte {
	if env.Pair == nil {
		return nil
	}
	return env.Pair.Cert.Certificate[0]
}

// rules returns every rule of p, inbound then outbound.
func (p *Policy) rules() []*Rule {
	return append(slices.Clip(p.Inbound), p.Outbound...)
}

func (p *Policy) rulesByName() map[string]*Rule {
	m := map[string]*Rule{}
	for _, r := range p.rules() {
		m[r.Name] = r
	}
	return m
}
