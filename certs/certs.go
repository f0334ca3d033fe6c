// Package certs owns loading key pairs and trust bundles from PEM files and
// making development certificates.
//
// Errors name the file and the step that failed; they never carry key
// material.
package certs

import (
	"crypto/tls"
	"crypto/x509"
)

// Pair is a certificate chain with its private key, ready for crypto/tls.
type Pair struct {
	// Cert holds the DER chain, leaf first, and the private key; its Leaf
	// field is set as well.
	Cert tls.Certificate
	// Leaf is the parsed end-entity certificate, the same as Cert.Leaf.
	Leaf *x509.Certificate
}
