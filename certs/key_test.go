package certs

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"testing"
)

// TestKeyBuffersWiped checks that the PEM text and the DER decoded from
// it are all zeros once the key is parsed, for every key form, on
// success and on failure, and that the parsed key still signs.
func TestKeyBuffersWiped(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sec1, err := x509.MarshalECPrivateKey(ecKey)
	if err != nil {
		t.Fatal(err)
	}
	cert := selfSigned(t, ecKey, &ecKey.PublicKey)
	tests := []struct {
		name string
		pem  []byte
		ok   bool
	}{
		{"PKCS#1 RSA", pemOf("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey)), true},
		{"SEC1 EC", pemOf("EC PRIVATE KEY", sec1), true},
		{"PKCS#8 RSA", pemOf("PRIVATE KEY", pkcs8(t, rsaKey)), true},
		{"PKCS#8 EC", pemOf("PRIVATE KEY", pkcs8(t, ecKey)), true},
		{"PKCS#8 Ed25519", pemOf("PRIVATE KEY", pkcs8(t, edKey)), true},
		{"unparsable", pemOf("PRIVATE KEY", []byte("secret-bytes")), false},
		{"certificate", cert, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := bytes.Clone(tt.pem)
			key, err := keyFromPEM("key.pem", data)
			if (err == nil) != tt.ok {
				t.Fatalf("got error %v, want success %v", err, tt.ok)
			}
			if !allZero(data) {
				t.Errorf("PEM buffer after parsing: got %d non-zero bytes, want none", nonZero(data))
			}
			if key != nil {
				checkSigns(t, key)
			}
		})
	}
}

// TestParseKeyWipesDER checks that parseKey leaves the block's DER zeroed.
func TestParseKeyWipesDER(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block := &pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8(t, key)}
	signer, err := parseKey(block)
	if err != nil {
		t.Fatal(err)
	}
	if !allZero(block.Bytes) {
		t.Errorf("DER after parsing: got %d non-zero bytes, want none", nonZero(block.Bytes))
	}
	if !signer.(*ecdsa.PrivateKey).Equal(key) {
		t.Error("parsed key: got a different key, want the one encoded")
	}
}

func pemOf(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func pkcs8(t *testing.T, key any) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func allZero(b []byte) bool { return nonZero(b) == 0 }

func nonZero(b []byte) int {
	n := 0
	for _, c := range b {
		if c != 0 {
			n++
		}
	}
	return n
}

// checkSigns signs with key and verifies the signature with its public
// half.
func checkSigns(t *testing.T, key crypto.Signer) {
	t.Helper()
	msg := []byte("attlsd")
	digest := sha256.Sum256(msg)
	ok := false
	switch pub := key.Public().(type) {
	case ed25519.PublicKey:
		sig, err := key.Sign(rand.Reader, msg, crypto.Hash(0))
		ok = err == nil && ed25519.Verify(pub, msg, sig)
	case *rsa.PublicKey:
		sig, err := key.Sign(rand.Reader, digest[:], crypto.SHA256)
		ok = err == nil && rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sig) == nil
	case *ecdsa.PublicKey:
		sig, err := key.Sign(rand.Reader, digest[:], crypto.SHA256)
		ok = err == nil && ecdsa.VerifyASN1(pub, digest[:], sig)
	}
	if !ok {
		t.Errorf("a signature by the parsed %T does not verify", key)
	}
}
