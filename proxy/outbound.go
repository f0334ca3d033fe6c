package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"github.com/attlsd/attlsd/internal/logkey"
	"github.com/attlsd/attlsd/policy"
)

// portMapped runs an app's connection to a port-mapped outbound rule:
// the rule's endpoint is where TLS goes.
func (c *conn) portMapped(ctx context.Context, l *policy.Listener) error {
	rule, err := c.match(l)
	if err != nil {
		return err
	}
	return c.outbound(ctx, rule, rule.Endpoint, rule.ServerName, nil)
}

// intercepted runs a connection that netfilter redirected to an intercept
// listener: its original destination picks the rule and is where TLS goes.
func (c *conn) intercepted(ctx context.Context, p *policy.Policy) error {
	dst, err := originalDst(c.raw)
	if errors.Is(err, syscall.ENOENT) {
		return &refusal{kind: "not_redirected", reason: notRedirected}
	}
	if err != nil {
		return &refusal{reason: "no original destination", kind: "not_redirected", err: err}
	}
	if sameAddr(dst, c.raw.LocalAddr()) {
		return &refusal{kind: "not_redirected", reason: "connection was not redirected: " +
			"an app must connect to its real destination and netfilter redirect it here"}
	}
	if from, err := netip.ParseAddrPort(c.raw.RemoteAddr().String()); err == nil &&
		c.s.loops.looped(from, dst) {
		return &refusal{kind: "redirect_loop", reason: "redirect loop: attlsd's own connection to " + dst.String() +
			" was redirected back to it; exclude attlsd's traffic from the redirect " +
			"(for example iptables -m owner ! --uid-owner attlsd)"}
	}
	rule := p.MatchOriginal(dst)
	if rule == nil {
		c.fields = c.fields.Str(logkey.Endpoint, dst.String())
		return &refusal{reason: "no outbound rule takes destination " + dst.String(), kind: "no_rule"}
	}
	if err := c.take(rule); err != nil {
		return err
	}
	name := rule.ServerName
	if name == "" { // verified against the certificate's IP SANs
		name = dst.Addr().Unmap().String()
	}
	return c.outbound(ctx, rule, dst.String(), name, &c.s.loops)
}

// notRedirected says why a connection that netfilter did not track came
// to an intercept port. SO_ORIGINAL_DST reads the connection's conntrack
// entry and fails with ENOENT when there is none: no NAT rule matched it,
// or conntrack is not running in this network namespace.
const notRedirected = "connection was not redirected by netfilter (it has no " +
	"conntrack entry, so no original destination): an app must connect to its " +
	"real destination and a nat REDIRECT or DNAT rule send it here; check that the " +
	"rule is loaded in this network namespace (nft list ruleset, iptables -t nat -S) " +
	"and that it matches the app's traffic"

// outbound originates TLS to endpoint for the app on c.raw and relays.
// The app's first bytes are judged before attlsd dials, when the app
// sends them soon enough, and before any is forwarded in any case: an
// app that speaks TLS itself is refused. The app's bytes flow only once
// the handshake has succeeded. A loop guard, when given, records the
// connection's source port while it lasts.
func (c *conn) outbound(ctx context.Context, rule *policy.Rule, endpoint, name string,
	guard *loopGuard) error {
	c.fields = c.fields.Str(logkey.Endpoint, endpoint).Str(logkey.SNI, name)
	c.update(func(i *ConnInfo) { i.Target, i.SNI = endpoint, name })
	check := new(helloCheck)
	if err := check.peek(c.raw, rule.Environment.HandshakeTimeout); err != nil {
		return err
	}
	c.s.setConnecting(c, true)

	var control func(string, string, syscall.RawConn) error
	if guard != nil {
		control = guard.control
	}
	tc, took, err := originate(ctx, rule, endpoint, name, control)
	if err != nil {
		return err
	}
	c.upstream(tc)
	c.s.obs.Handshake(c.dir, took)
	c.describeOutbound(tc)
	if err := c.sendPassed(tc, check); err != nil {
		tc.Close()
		guard.release(tc)
		return err
	}

	app := side{conn: c.raw, name: "app"}
	if !check.decided {
		app.hello = check
	}
	return c.relay(app, side{conn: tc, name: "endpoint"}, rule, func(err error) {
		guard.release(tc)
		c.finish(rejectedLate(endpoint, rule, err))
	})
}

// sendPassed writes to the endpoint the app's bytes that the check read
// before the dial: they may be all the app sends before it waits for an
// answer, so they cannot wait for the relay's first read.
func (c *conn) sendPassed(tc *tls.Conn, check *helloCheck) error {
	b := check.passed()
	if len(b) == 0 {
		return nil
	}
	n, err := tc.Write(b)
	c.in.Add(int64(n))
	if err != nil {
		return fmt.Errorf("write to endpoint: %w", err)
	}
	return nil
}

// describeOutbound records the negotiated parameters in the log fields.
func (c *conn) describeOutbound(tc *tls.Conn) {
	cs := tc.ConnectionState()
	c.update(func(i *ConnInfo) {
		i.TLSVersion = versionName(cs.Version)
		i.Cipher = tls.CipherSuiteName(cs.CipherSuite)
		i.ALPN = cs.NegotiatedProtocol
	})
	c.fields = c.fields.Str(logkey.Remote, tc.RemoteAddr().String()).
		Str(logkey.Local, tc.LocalAddr().String()).
		Str(logkey.ALPN, cs.NegotiatedProtocol).
		Str(logkey.TLSVersion, versionName(cs.Version)).
		Str(logkey.Cipher, tls.CipherSuiteName(cs.CipherSuite)).
		Str(logkey.Group, groupName(cs.CurveID))
}

// sameAddr reports whether a and b are one address, IPv4-mapped or not.
func sameAddr(a netip.AddrPort, b net.Addr) bool {
	ap, err := netip.ParseAddrPort(b.String())
	return err == nil && ap.Addr().Unmap() == a.Addr().Unmap() && ap.Port() == a.Port()
}
