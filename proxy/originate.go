package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/attlsd/attlsd/policy"
)

// originate connects to endpoint within the rule's connect timeout and
// runs the client handshake within its handshake timeout, verifying the
// server's certificate against the rule's trust and name. A host name is
// resolved on every call, so a DNS change reaches the next connection, and
// when it has several addresses each is tried in turn.
// control, when not nil, is the dialer's socket hook (the loop guard).
// It also returns how long the handshake took.
func originate(ctx context.Context, rule *policy.Rule, endpoint, name string,
	control func(string, string, syscall.RawConn) error) (*tls.Conn, time.Duration, error) {
	d := net.Dialer{Timeout: rule.ConnectTimeout, Control: control}
	raw, err := d.DialContext(ctx, "tcp", endpoint)
	if err != nil {
		return nil, 0, dialError(endpoint, rule.ConnectTimeout, err)
	}

	// A clone shares the rule's session cache. Without a certificate of
	// its own the clone also notes whether the server asked for one: in
	// TLS 1.2 many servers refuse a missing one with a bare
	// handshake_failure alert (RFC 5246 7.4.6), which says nothing about
	// certificates.
	cfg := rule.TLSConfig
	var asked bool
	if cfg.ServerName != name || rule.Environment.Pair == nil {
		cfg = cfg.Clone()
		cfg.ServerName = name
	}
	if rule.Environment.Pair == nil {
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			asked = true // the handshake runs on this goroutine
			return new(tls.Certificate), nil
		}
	}

	timeout := rule.Environment.HandshakeTimeout
	hctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tc := tls.Client(newSock(raw), cfg)
	began := time.Now()
	if err := tc.HandshakeContext(hctx); err != nil {
		raw.Close()
		if hctx.Err() != nil && ctx.Err() == nil {
			err = fmt.Errorf("no handshake within %s", timeout)
		}
		return nil, 0, clientHandshakeError(endpoint, name, rule, asked, err)
	}
	return tc, time.Since(began), nil
}

// dialError words a failed connect for an operator.
func dialError(endpoint string, timeout time.Duration, err error) *remoteError {
	var dnsErr *net.DNSError
	switch {
	case errors.As(err, &dnsErr):
		return &remoteError{fmt.Errorf("resolve %s: %w", dnsErr.Name, err), "resolve"}
	case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
		return &remoteError{fmt.Errorf("connect to %s: no answer within %s", endpoint, timeout),
			"connect_timeout"}
	case errors.Is(err, syscall.ECONNREFUSED):
		return &remoteError{fmt.Errorf("connect to %s: %w", endpoint, err), "connect_refused"}
	}
	return &remoteError{fmt.Errorf("connect to %s: %w", endpoint, err), "connect_failed"}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// clientHandshakeError says why the endpoint's handshake failed, and what
// to change, in the terms of the policy. asked tells whether the server
// asked for a client certificate.
func clientHandshakeError(endpoint, name string, rule *policy.Rule, asked bool,
	err error) *remoteError {
	var unknown x509.UnknownAuthorityError
	var host x509.HostnameError
	var invalid x509.CertificateInvalidError
	switch {
	case errors.As(err, &unknown):
		return &remoteError{fmt.Errorf("server certificate of %s is signed by an unknown authority; "+
			"add its CA to trust in environment %q: %w", endpoint, rule.Environment.Name, err),
			"unknown_authority"}
	case errors.As(err, &host):
		return &remoteError{fmt.Errorf("server certificate of %s is not valid for %q; "+
			"set server_name to a name it holds: %w", endpoint, name, err), "name_mismatch"}
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		return &remoteError{fmt.Errorf("server certificate of %s has expired or is not yet valid "+
			"(check the clocks): %w", endpoint, err), "expired"}
	case certRejected(err):
		return clientCertError(endpoint, rule, err)
	case asked && rule.Environment.Pair == nil && remoteAlert(err):
		// Refused after asking for a certificate that was not sent.
		return clientCertError(endpoint, rule, err)
	case strings.HasPrefix(err.Error(), "no handshake within"):
		return &remoteError{fmt.Errorf("handshake with %s: %w", endpoint, err), "handshake_timeout"}
	}
	return &remoteError{fmt.Errorf("handshake with %s: %w", endpoint, err), "handshake_failed"}
}

// certRejected reports a TLS alert by which a server refuses the client's
// certificate or its absence. crypto/tls exports no type for received
// alerts, so the alert's text is matched.
func certRejected(err error) bool {
	if err == nil || !remoteAlert(err) {
		return false
	}
	msg := err.Error()
	for _, a := range []string{"certificate required", "bad certificate",
		"unknown certificate authority", "unknown certificate",
		"certificate unknown", "access denied", "expired certificate",
		"revoked certificate", "unsupported certificate"} {
		if strings.Contains(msg, a) {
			return true
		}
	}
	return false
}

// remoteAlert reports whether err is a TLS alert the peer sent.
func remoteAlert(err error) bool {
	return strings.Contains(err.Error(), "remote error: tls: ")
}

// clientCertError words a server's refusal of attlsd's client certificate.
func clientCertError(endpoint string, rule *policy.Rule, err error) *remoteError {
	if rule.Environment.Pair == nil {
		return &remoteError{fmt.Errorf("%s requires a client certificate; set certificate and "+
			"private_key in environment %q: %w", endpoint, rule.Environment.Name, err),
			"client_cert_required"}
	}
	return &remoteError{fmt.Errorf("%s rejected the client certificate of environment %q: %w",
		endpoint, rule.Environment.Name, err), "client_cert_rejected"}
}

// rejectedLate rewords a relay that ended on a certificate alert. In TLS
// 1.3 the client's handshake ends before the server has checked the
// client certificate, so a refusal arrives on the first read (RFC 8446
// 4.4.2.4).
func rejectedLate(endpoint string, rule *policy.Rule, err error) error {
	if !certRejected(err) {
		return err
	}
	return clientCertError(endpoint, rule, err)
}
