package certs

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
)

// readKey finds and parses the private key in a PEM file.
//
// Parse errors from crypto/x509 are dropped on purpose: they describe the
// key's encoding, and an error string may end up in a log.
func readKey(file string) (crypto.Signer, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read private key: %w", err)
	}
	block, err := findKeyBlock(file, data)
	if err != nil {
		return nil, err
	}
	key, err := parseKey(block)
	if err != nil {
		return nil, fmt.Errorf("parse private key %q: %w", file, err)
	}
	return key, nil
}

// findKeyBlock returns the first private key block in data, skipping
// blocks such as "EC PARAMETERS" that openssl writes before the key.
func findKeyBlock(file string, data []byte) (*pem.Block, error) {
	sawCert := false
	for block, rest := pem.Decode(data); block != nil; block, rest = pem.Decode(rest) {
		switch block.Type {
		case "PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY":
			return block, nil
		case "ENCRYPTED PRIVATE KEY":
			return nil, fmt.Errorf("read private key: %q is encrypted; "+
				"attlsd needs an unencrypted key", file)
		case "CERTIFICATE":
			sawCert = true
		}
	}
	if sawCert {
		return nil, fmt.Errorf("read private key: %q holds a certificate, not a key", file)
	}
	return nil, fmt.Errorf("read private key: no PEM private key in %q", file)
}

// parseKey decodes a PKCS#8, PKCS#1 or SEC1 block into a signing key.
func parseKey(block *pem.Block) (crypto.Signer, error) {
	if block.Headers["Proc-Type"] != "" {
		return nil, fmt.Errorf("key is encrypted; attlsd needs an unencrypted key")
	}
	var key any
	var err error
	switch block.Type {
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	}
	if err != nil {
		return nil, fmt.Errorf("not a valid %s block", block.Type)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("unsupported key type %T", key)
	}
	return signer, nil
}
