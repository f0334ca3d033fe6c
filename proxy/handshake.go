package proxy

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/attlsd/attlsd/policy"
)

// AT-TLS return codes that attlsd reuses in its logs.
const (
	CodeNoClientCert = 5001 // a certificate was required and none was sent
	CodeCleartext    = 5003 // cleartext arrived where TLS was expected
	CodeTimeout      = 5004 // no handshake within the handshake timeout
)

// refusal is why a connection ended before any byte reached a backend.
type refusal struct {
	reason  string
	kind    string // a short label for metrics, such as "no_rule"
	code    int    // an AT-TLS code, or 0
	routine bool   // an ordinary internet ending, not worth a warning
	// handshake marks a failed TLS handshake, counted apart from other
	// refusals.
	handshake bool
	err       error
}

func (r *refusal) Error() string {
	if r.err == nil {
		return r.reason
	}
	return r.reason + ": " + r.err.Error()
}

func (r *refusal) Unwrap() error { return r.err }

// handshake runs the server side of TLS on raw with the rule's settings.
// The deadline covers the whole handshake, so a client that sends nothing,
// or one byte a second, is cut at the AT-TLS HandshakeTimeout.
func handshake(raw net.Conn, r *policy.Rule) (*tls.Conn, error) {
	timeout := r.Environment.HandshakeTimeout
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()

	tc := tls.Server(raw, r.TLSConfig)
	if err := tc.HandshakeContext(ctx); err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("no handshake within %s", timeout)
			return nil, &refusal{reason: "handshake timed out", kind: "handshake_timeout",
				code: CodeTimeout, handshake: true, err: err}
		}
		return nil, classify(err)
	}
	return tc, nil
}

// classify turns a handshake error into a refusal an operator can act on.
func classify(err error) *refusal {
	var rec tls.RecordHeaderError
	var verr *tls.CertificateVerificationError
	switch {
	case errors.As(err, &rec):
		return &refusal{reason: "cleartext or garbage on a TLS port", kind: "cleartext",
			code: CodeCleartext, handshake: true, err: err}
	case errors.As(err, &verr):
		return &refusal{reason: "client certificate not verified",
			kind: "client_cert_unverified", handshake: true, err: verr.Err}
	case noClientCert(err):
		return &refusal{reason: "client certificate required, none sent",
			kind: "client_cert_required", code: CodeNoClientCert, handshake: true}
	case ordinaryEnd(err):
		return &refusal{reason: "client left during handshake", kind: "client_left",
			routine: true, handshake: true}
	}
	return &refusal{reason: "handshake failed", kind: "handshake_failed", handshake: true, err: err}
}

// noClientCert matches crypto/tls's error for RequireAndVerifyClientCert
// without a certificate; crypto/tls exports no value for it.
func noClientCert(err error) bool {
	return strings.Contains(err.Error(), "client didn't provide a certificate")
}

// ordinaryEnd reports endings that are routine on the internet: the peer
// closed or reset the connection.
func ordinaryEnd(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, net.ErrClosed)
}

// sigScheme names the server's signature scheme where the key and version
// fix it: TLS 1.3 binds each ECDSA curve to one scheme (RFC 8446 4.2.3)
// and Ed25519 has only one. crypto/tls does not report the scheme it chose,
// so RSA keys and TLS 1.2 ECDSA give "" rather than a guess.
func sigScheme(version uint16, leaf *x509.Certificate) string {
	if leaf == nil {
		return ""
	}
	switch k := leaf.PublicKey.(type) {
	case ed25519.PublicKey:
		return "ed25519"
	case *ecdsa.PublicKey:
		if version != tls.VersionTLS13 {
			return ""
		}
		switch k.Curve {
		case elliptic.P256():
			return "ecdsa_secp256r1_sha256"
		case elliptic.P384():
			return "ecdsa_secp384r1_sha384"
		case elliptic.P521():
			return "ecdsa_secp521r1_sha512"
		}
	}
	return ""
}
