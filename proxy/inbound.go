package proxy

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/attlsd/attlsd/internal/logkey"
	"github.com/attlsd/attlsd/policy"
)

// lingerTimeout bounds how long a client whose backend failed may go on
// sending before its connection is closed anyway.
const lingerTimeout = time.Second

// inbound runs an inbound connection: match, handshake, dial the backend,
// write the header, relay.
func (c *conn) inbound(ctx context.Context, l *policy.Listener) error {
	rule, err := c.match(l)
	if err != nil {
		return err
	}
	c.fields = c.fields.Str(logkey.Backend, rule.Backend.String())
	c.update(func(i *ConnInfo) { i.Target = rule.Backend.String() })

	client := c.raw
	meta := Meta{Client: c.raw.RemoteAddr(), Local: c.raw.LocalAddr(),
		ConnID: c.info.ID, Rule: rule.Name}
	if rule.TLS {
		began := time.Now()
		tc, err := handshake(c.raw, rule)
		if err != nil {
			return err
		}
		c.s.obs.Handshake(c.dir, time.Since(began))
		client = tc
		c.describeTLS(tc, rule, &meta)
	}

	backend, err := c.connectBackend(ctx, rule, &meta)
	if err != nil {
		closeCleanly(client)
		return err
	}
	return c.relay(side{conn: client, name: "client"}, side{conn: backend, name: "backend"},
		rule, c.finish)
}

// connectBackend dials rule's backend, records it as the connection's
// upstream, and writes the metadata header.
func (c *conn) connectBackend(ctx context.Context, rule *policy.Rule, m *Meta) (net.Conn, error) {
	backend, err := c.dial(ctx, rule)
	if err != nil {
		return nil, err
	}
	c.upstream(backend)
	if err := writeHeader(backend, rule.ProxyProtocol, m); err != nil {
		backend.Close()
		return nil, &remoteError{err: err}
	}
	return backend, nil
}

// closeCleanly ends a client's (or an app's) connection that will carry
// no response: close_notify on TLS, then a TCP FIN, then it reads and
// discards what the client still sends until the client closes or
// lingerTimeout passes. The caller closes the connection afterwards.
//
// A TCP that closes with received data still unread, or that receives
// data after the close, answers with a RST instead of ending in order
// (RFC 1122 4.2.2.13, on the CLOSE of RFC 793 3.5); Linux does both. The
// client has usually sent its request right after its handshake, so a
// plain close resets it, and the RST makes the client's kernel drop what
// it has not read yet, close_notify included: curl and openssl report
// "connection reset by peer" for a connection that attlsd meant to end.
// Reading until the client's own close (or the bound) leaves nothing
// unread when the socket closes.
func closeCleanly(client net.Conn) {
	// One deadline bounds the close_notify write and the drain both.
	client.SetDeadline(time.Now().Add(lingerTimeout))
	raw := client
	if tc, ok := client.(*tls.Conn); ok {
		tc.CloseWrite()
		raw = tc.NetConn()
	}
	if hc, ok := raw.(interface{ CloseWrite() error }); ok {
		hc.CloseWrite()
	}
	io.Copy(io.Discard, raw)
}

// describeTLS records the negotiated parameters in the log fields and the
// header metadata.
func (c *conn) describeTLS(tc *tls.Conn, rule *policy.Rule, m *Meta) {
	cs := tc.ConnectionState()
	m.TLS = &cs
	m.CertVerified = len(cs.VerifiedChains) > 0
	if p := rule.Environment.Pair; p != nil {
		m.SigScheme = sigScheme(&cs, p.Leaf)
	}
	c.update(func(i *ConnInfo) {
		i.TLSVersion = versionName(cs.Version)
		i.Cipher = tls.CipherSuiteName(cs.CipherSuite)
		i.SNI, i.ALPN = cs.ServerName, cs.NegotiatedProtocol
	})
	c.fields = c.fields.Str(logkey.SNI, cs.ServerName).
		Str(logkey.ALPN, cs.NegotiatedProtocol).
		Str(logkey.TLSVersion, versionName(cs.Version)).
		Str(logkey.Cipher, tls.CipherSuiteName(cs.CipherSuite)).
		Str(logkey.Group, groupName(cs.CurveID))
}

// writeHeader sends the metadata header before any application byte.
func writeHeader(backend net.Conn, format policy.ProxyProtocol, m *Meta) error {
	h, err := header(format, m)
	if err != nil || len(h) == 0 {
		return err
	}
	if _, err := backend.Write(h); err != nil {
		return fmt.Errorf("write proxy header: %w", err)
	}
	return nil
}
