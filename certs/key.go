package certs

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"fmt"

	"github.com/attlsd/attlsd/internal/smallfile"
)

// readKey finds and parses the private key in a PEM file.
//
// Parse errors from crypto/x509 are dropped on purpose: they describe the
// key's encoding, and an error string may end up in a log.
func readKey(file string) (crypto.Signer, error) {
	data, err := smallfile.Read(file)
	if err != nil {
		return nil, fmt.Errorf("read private key: %w", err)
	}
	return keyFromPEM(file, data)
}

// keyFromPEM parses the key in data, the contents of file, and then wipes
// data and the DER decoded from it, whatever the outcome: they are the
// copies of the key that attlsd owns, and nothing needs them once the key
// is parsed.
//
// That is as far as a Go program can go. The parsed key (the big.Int
// limbs of an RSA key and its CRT values, an ECDSA scalar, and the copies
// crypto/internal keeps of either) must stay in memory as long as a TLS
// configuration signs handshakes with it; after a reload replaces that
// configuration it lingers until the garbage collector reuses the memory,
// and Go offers no way to wipe it. pem.Decode also makes an unreachable
// copy of the base64 text when it holds spaces or tabs. Keeping that
// memory out of core dumps and swap is the deployment's part (core dumps
// off, swap off or encrypted).
func keyFromPEM(file string, data []byte) (crypto.Signer, error) {
	defer clear(data)
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

// parseKey decodes a PKCS#8, PKCS#1 or SEC1 block into a signing key and
// wipes the block's DER, which the parsed key does not share: crypto/x509
// copies what it keeps into big.Ints and its own key types.
func parseKey(block *pem.Block) (crypto.Signer, error) {
	defer clear(block.Bytes)
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
