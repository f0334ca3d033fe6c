package policy

import (
	"crypto/tls"
	"slices"
	"strings"
)

// clientSessionCacheSize bounds the TLS sessions kept per client
// configuration (an environment and server name, see tlsKey). Resuming
// saves a full handshake, and a certificate check, on every app connection
// after the first to a server; a few dozen servers is plenty, and the
// bound keeps a transparent rule that reaches many addresses from growing
// without limit.
const clientSessionCacheSize = 64

// tlsClientAuth maps a rule's client_auth to crypto/tls. AT-TLS PassThru
// asks for a certificate and lets anything through; Full verifies one if
// given; Required insists on a verified one.
var tlsClientAuth = map[ClientAuth]tls.ClientAuthType{
	ClientAuthNone:     tls.NoClientCert,
	ClientAuthPassthru: tls.RequestClientCert,
	ClientAuthFull:     tls.VerifyClientCertIfGiven,
	ClientAuthRequired: tls.RequireAndVerifyClientCert,
}

// serverConfig builds the TLS server configuration of a TLS rule whose
// environment loaded without error. It depends on the environment and the
// rule's client authentication only, so rules that agree on both share it.
func serverConfig(r *Rule) *tls.Config {
	env := r.Environment
	return &tls.Config{
		Certificates:     []tls.Certificate{env.Pair.Cert},
		MinVersion:       env.MinVersion,
		MaxVersion:       env.MaxVersion,
		CipherSuites:     suitesOf(env),
		CurvePreferences: env.Curves,
		NextProtos:       env.ALPN,
		ClientAuth:       tlsClientAuth[r.ClientAuth],
		ClientCAs:        env.Trust,
	}
}

// clientConfig builds the TLS client configuration of an outbound rule
// whose environment loaded without error. It depends on the environment
// and the rule's server name only, so rules that agree on both share it,
// and its session cache.
//
// RootCAs nil means the system roots. ServerName is empty on a
// transparent rule without server_name; crypto/tls then refuses to
// handshake until the proxy sets it, on a Clone, to the original
// destination's IP, which keeps the session cache shared. Verification is
// never skipped (AT-TLS checks only the chain unless HostReferenceId is
// set; attlsd always checks the name).
func clientConfig(r *Rule) *tls.Config {
	env := r.Environment
	c := &tls.Config{
		RootCAs:            env.Trust,
		ServerName:         r.ServerName,
		MinVersion:         env.MinVersion,
		MaxVersion:         env.MaxVersion,
		CipherSuites:       suitesOf(env),
		CurvePreferences:   env.Curves,
		NextProtos:         env.ALPN,
		ClientSessionCache: tls.NewLRUClientSessionCache(clientSessionCacheSize),
	}
	if env.Pair != nil {
		c.Certificates = []tls.Certificate{env.Pair.Cert}
	}
	return c
}

// defaultCipherSuites are the TLS 1.2 suites of an environment without
// cipher_suites: those of Go's secure suites that pair an ephemeral ECDHE
// key exchange with an AEAD (AES-GCM or ChaCha20-Poly1305). Go's own
// default list also offers the ECDHE suites with AES-CBC and HMAC-SHA1,
// kept for old clients: MAC-then-encrypt with SHA-1, the padding-oracle
// family (Lucky13) and no AEAD. A policy that must serve such clients
// lists those suites in cipher_suites. TLS 1.3 suites are all AEAD and
// forward secret, and Go does not let them be chosen.
var defaultCipherSuites = aeadSuites()

// aeadSuites filters tls.CipherSuites, in Go's order, to the ECDHE AEAD
// suites of TLS 1.2.
func aeadSuites() []uint16 {
	var ids []uint16
	for _, s := range tls.CipherSuites() {
		ecdhe := strings.HasPrefix(s.Name, "TLS_ECDHE_")
		aead := strings.Contains(s.Name, "_GCM_") || strings.Contains(s.Name, "_CHACHA20_POLY1305")
		if ecdhe && aead && slices.Contains(s.SupportedVersions, tls.VersionTLS12) {
			ids = append(ids, s.ID)
		}
	}
	return ids
}

// suitesOf is the environment's list, or defaultCipherSuites when it
// names none. Go ignores the order of Config.CipherSuites and ranks the
// suites itself by the hardware's AES support.
func suitesOf(env *Environment) []uint16 {
	if len(env.CipherSuites) > 0 {
		return env.CipherSuites
	}
	return defaultCipherSuites
}
