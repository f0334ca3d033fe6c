package proxy

import (
	"context"
	"crypto/tls"
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

// outbound originates TLS to endpoint for the app on c.raw and relays.
// The app's bytes flow only once the handshake has succeeded; the first
// of them are checked for a ClientHello of the app's own. A loop guard,
// when given, records the connection's source port while it lasts.
func (c *conn) outbound(ctx context.Context, rule *policy.Rule, endpoint, name string,
	guard *loopGuard) error {
	c.fields = c.fields.Str(logkey.Endpoint, endpoint).Str(logkey.SNI, name)
	c.update(func(i *ConnInfo) { i.Target, i.SNI = endpoint, name })
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
	if guard != nil {
		if ap, err := netip.ParseAddrPort(tc.LocalAddr().String()); err == nil {
			defer guard.forget(ap.Port())
		}
	}
	c.describeOutbound(tc)

	app := side{conn: c.raw, name: "app", inspect: refuseClientHello}
	err = relay(app, side{conn: tc, name: "endpoint"}, &c.in, &c.out, ruleTimeouts(rule))
	return rejectedLate(endpoint, rule, err)
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

// refuseClientHello spots an app that speaks TLS into an outbound rule,
// a known AT-TLS misconfiguration: TLS inside TLS reaches no server in a
// useful form. A TLS record starts with content type 22 (handshake) and
// major version 3 (RFC 8446 5.1).
func refuseClientHello(first []byte) error {
	if len(first) >= 3 && first[0] == 0x16 && first[1] == 0x03 && first[2] <= 0x04 {
		return &refusal{kind: "tls_inside_tls", reason: "the app sent a TLS ClientHello into an outbound rule " +
			"(TLS inside TLS): make the app speak cleartext to this port, " +
			"or point it at the endpoint directly"}
	}
	return nil
}

// sameAddr reports whether a and b are one address, IPv4-mapped or not.
func sameAddr(a netip.AddrPort, b net.Addr) bool {
	ap, err := netip.ParseAddrPort(b.String())
	return err == nil && ap.Addr().Unmap() == a.Addr().Unmap() && ap.Port() == a.Port()
}
