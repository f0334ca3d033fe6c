package proxy

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"time"

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
// or one byte a second, is cut at the AT-TLS HandshakeTimeout. A socket
// deadline, not a context: HandshakeContext would start a goroutine per
// handshake to watch the context.
func handshake(raw net.Conn, r *policy.Rule) (*tls.Conn, error) {
	timeout := r.Environment.HandshakeTimeout
	raw.SetDeadline(time.Now().Add(timeout))
	tc := tls.Server(newSock(raw), r.TLSConfig)
	if err := tc.Handshake(); err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			err = fmt.Errorf("no handshake within %s", timeout)
			return nil, &refusal{reason: "handshake timed out", kind: "handshake_timeout",
				code: CodeTimeout, handshake: true, err: err}
		}
		// crypto/tls sets the version only once it has parsed a
		// ClientHello and found a version both sides speak; before that,
		// the failure lies in the client's first flight.
		return nil, classify(err, tc.ConnectionState().Version == 0)
	}
	raw.SetDeadline(time.Time{})
	return tc, nil
}

// classify turns a handshake error into a refusal an operator can act on.
// firstFlight says that no ClientHello was accepted yet.
func classify(err error, firstFlight bool) *refusal {
	var verr *tls.CertificateVerificationError
	switch {
	case notHello(err, firstFlight):
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

// notHello reports input that is not a TLS client speaking: a first
// record that is no TLS record at all (crypto/tls's RecordHeaderError, at
// any point), or, on the first flight, a handshake record that holds no
// ClientHello crypto/tls can parse: a message over its size limit, one of
// another type, one that does not decode (crypto/tls answers with an
// alert of its own, a "local error"), or an alert in place of a hello.
// A well-formed ClientHello that offers no version in common is a real
// client with a mismatched configuration, and is left to "handshake
// failed".
func notHello(err error, firstFlight bool) bool {
	var rec tls.RecordHeaderError
	if errors.As(err, &rec) {
		return true
	}
	if !firstFlight {
		return false
	}
	var op *net.OpError
	if errors.As(err, &op) && (op.Op == "local error" || op.Op == "remote error") {
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, "exceeds maximum") ||
		strings.Contains(msg, "unexpected handshake message")
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

// sigScheme names the signature scheme the server signed cs's handshake
// with, where the key and version fix it: TLS 1.3 binds each ECDSA curve
// to one scheme (RFC 8446 4.2.3) and Ed25519 has only one. crypto/tls does
// not report the scheme it chose, so RSA keys and TLS 1.2 ECDSA give ""
// rather than a guess. A resumed session signs nothing: TLS 1.3 resumption
// authenticates with the PSK and sends no CertificateVerify (RFC 8446
// 2.2), and a TLS 1.2 abbreviated handshake has no ServerKeyExchange
// (RFC 5246 7.3), so it gives "" too.
func sigScheme(cs *tls.ConnectionState, leaf *x509.Certificate) string {
	if leaf == nil || cs.DidResume {
		return ""
	}
	switch k := leaf.PublicKey.(type) {
	case ed25519.PublicKey:
		return "ed25519"
	case *ecdsa.PublicKey:
		if cs.Version != tls.VersionTLS13 {
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
