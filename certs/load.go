package certs

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"

	"github.com/attlsd/attlsd/internal/smallfile"
)

// ErrKeyMismatch is wrapped by LoadPair's error when the private key does
// not belong to the leaf certificate.
var ErrKeyMismatch = errors.New("private key does not match certificate")

// KeyError is a LoadPair failure that lies in the private key file rather
// than in the certificate file: unreadable, unparsable, or not the leaf's
// key. Its message never holds key material.
type KeyError struct {
	File string // the private key file as given to LoadPair
	Err  error
}

// Error returns the underlying message, which already names the file.
func (e *KeyError) Error() string { return e.Err.Error() }

// Unwrap returns the underlying error.
func (e *KeyError) Unwrap() error { return e.Err }

// LoadPair reads a PEM certificate chain (leaf first, then intermediates)
// and a PEM private key in PKCS#8, PKCS#1 or SEC1 form, and checks that
// the key belongs to the leaf. Problems with the key file come back as a
// *KeyError; anything else is about the certificate file.
func LoadPair(certFile, keyFile string) (*Pair, error) {
	chain, err := ReadCerts(certFile)
	if err != nil {
		return nil, err
	}
	key, err := readKey(keyFile)
	if err != nil {
		return nil, &KeyError{File: keyFile, Err: err}
	}
	if !keyMatches(chain[0], key) {
		err := fmt.Errorf("load %q with %q: %w", certFile, keyFile, ErrKeyMismatch)
		return nil, &KeyError{File: keyFile, Err: err}
	}
	return newPair(chain, key), nil
}

// newPair assembles a Pair from a parsed chain and its leaf's key.
func newPair(chain []*x509.Certificate, key crypto.Signer) *Pair {
	p := &Pair{Leaf: chain[0]}
	for _, c := range chain {
		p.Cert.Certificate = append(p.Cert.Certificate, c.Raw)
	}
	p.Cert.PrivateKey = key
	p.Cert.Leaf = chain[0]
	return p
}

// keyMatches reports whether key is the private half of cert's public key.
func keyMatches(cert *x509.Certificate, key crypto.Signer) bool {
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	return ok && pub.Equal(cert.PublicKey)
}

// LoadPool reads CA certificates from PEM files into one pool. Every file
// must be readable and hold at least one certificate.
func LoadPool(files ...string) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	for _, f := range files {
		chain, err := ReadCerts(f)
		if err != nil {
			return nil, err
		}
		for _, c := range chain {
			pool.AddCert(c)
		}
	}
	return pool, nil
}

// ReadCerts parses every CERTIFICATE block in a PEM file, in file order.
// Blocks of other types are skipped; a file without any is an error.
func ReadCerts(file string) ([]*x509.Certificate, error) {
	data, err := smallfile.Read(file)
	if err != nil {
		return nil, fmt.Errorf("read certificate: %w", err)
	}
	var chain []*x509.Certificate
	for block, rest := pem.Decode(data); block != nil; block, rest = pem.Decode(rest) {
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse certificate %d in %q: %w", len(chain)+1, file, err)
		}
		chain = append(chain, c)
	}
	if len(chain) == 0 {
		return nil, fmt.Errorf("read certificate: no PEM certificate in %q", file)
	}
	return chain, nil
}

// KeyModeProblem returns an error when keyFile can be read by its group or
// by others, and nil when only its owner can. A key that cannot be
// inspected is reported too.
func KeyModeProblem(keyFile string) error {
	fi, err := os.Stat(keyFile)
	if err != nil {
		return fmt.Errorf("check private key mode: %w", err)
	}
	if mode := fi.Mode().Perm(); mode&0o077 != 0 {
		return fmt.Errorf("private key %q is readable by group or others (mode %04o); "+
			"chmod 600 it", keyFile, mode)
	}
	return nil
}
