package policy

import (
	"crypto/tls"
)

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
// environment loaded without error. Each rule gets its own config, since
// client authentication is set per rule.
func serverConfig(r *Rule) *tls.Config {
	env := r.Environment
	return &tls.Config{
		Certificates:     []tls.Certificate{env.Pair.Cert},
		MinVersion:       env.MinVersion,
		MaxVersion:       env.MaxVersion,
		CipherSuites:     env.CipherSuites,
		CurvePreferences: env.Curves,
		NextProtos:       env.ALPN,
		ClientAuth:       tlsClientAuth[r.ClientAuth],
		ClientCAs:        env.Trust,
	}
}
