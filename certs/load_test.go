package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeFile writes data to name in dir and returns the path.
func writeFile(t *testing.T, dir, name string, data []byte, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

// selfSigned returns a PEM certificate for key's public half.
func selfSigned(t *testing.T, key any, pub any) []byte {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func TestLoadPairKeyFormats(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecDER, err := x509.MarshalECPrivateKey(ecKey)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(rsaKey)
	if err != nil {
		t.Fatal(err)
	}
	// openssl ecparam -genkey writes the curve parameters before the key.
	params := pem.EncodeToMemory(&pem.Block{Type: "EC PARAMETERS", Bytes: []byte{6, 0}})

	tests := []struct {
		name string
		cert []byte
		key  []byte
	}{
		{"PKCS#1 RSA", selfSigned(t, rsaKey, &rsaKey.PublicKey),
			pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY",
				Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)})},
		{"PKCS#8 RSA", selfSigned(t, rsaKey, &rsaKey.PublicKey),
			pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})},
		{"SEC1 EC", selfSigned(t, ecKey, &ecKey.PublicKey),
			pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: ecDER})},
		{"SEC1 EC after parameters", selfSigned(t, ecKey, &ecKey.PublicKey),
			append(params, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY",
				Bytes: ecDER})...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			c := writeFile(t, dir, "cert.pem", tt.cert, 0o644)
			k := writeFile(t, dir, "key.pem", tt.key, 0o600)
			pair, err := LoadPair(c, k)
			if err != nil {
				t.Fatalf("LoadPair: %v", err)
			}
			if pair.Leaf.Subject.CommonName != "test" {
				t.Errorf("got CN %q, want %q", pair.Leaf.Subject.CommonName, "test")
			}
		})
	}
}

func TestLoadPairChain(t *testing.T) {
	dir := initDev(t)
	server, _ := os.ReadFile(filepath.Join(dir, "server.pem"))
	ca, _ := os.ReadFile(filepath.Join(dir, "ca.pem"))
	chain := writeFile(t, dir, "chain.pem", append(server, ca...), 0o644)

	pair, err := LoadPair(chain, filepath.Join(dir, "server-key.pem"))
	if err != nil {
		t.Fatalf("LoadPair: %v", err)
	}
	if got := len(pair.Cert.Certificate); got != 2 {
		t.Fatalf("got %d certificates, want 2", got)
	}
	if pair.Leaf.Subject.CommonName != "attlsd dev server" {
		t.Errorf("got leaf %q, want the server certificate", pair.Leaf.Subject.CommonName)
	}
}

func TestLoadPairErrors(t *testing.T) {
	dir := initDev(t)
	server := filepath.Join(dir, "server.pem")
	serverKey := filepath.Join(dir, "server-key.pem")
	clientKey := filepath.Join(dir, "client-key.pem")
	garbage := writeFile(t, dir, "garbage.pem", []byte("not PEM at all\n"), 0o600)
	badKey := writeFile(t, dir, "bad-key.pem", pem.EncodeToMemory(
		&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("secret-bytes")}), 0o600)
	badCert := writeFile(t, dir, "bad-cert.pem", pem.EncodeToMemory(
		&pem.Block{Type: "CERTIFICATE", Bytes: []byte{0x30, 0x03, 1, 2, 3}}), 0o644)
	missing := filepath.Join(dir, "missing.pem")

	tests := []struct {
		name     string
		cert     string
		key      string
		want     string
		keyError bool
		is       error
	}{
		{"mismatched key", server, clientKey,
			"private key does not match certificate", true, ErrKeyMismatch},
		{"garbage certificate", garbage, serverKey, "no PEM certificate", false, nil},
		{"unparsable certificate", badCert, serverKey, "parse certificate 1", false, nil},
		{"garbage key", server, garbage, "no PEM private key", true, nil},
		{"unparsable key", server, badKey, "parse private key", true, nil},
		{"certificate as key", server, server, "holds a certificate, not a key", true, nil},
		{"missing certificate", missing, serverKey, "read certificate", false, fs.ErrNotExist},
		{"missing key", server, missing, "read private key", true, fs.ErrNotExist},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadPair(tt.cert, tt.key)
			if err == nil {
				t.Fatal("got no error")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %q, want it to contain %q", err, tt.want)
			}
			var ke *KeyError
			if got := errors.As(err, &ke); got != tt.keyError {
				t.Errorf("got KeyError %v, want %v (%v)", got, tt.keyError, err)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("got %v, want it to wrap %v", err, tt.is)
			}
			if strings.Contains(err.Error(), "secret") {
				t.Errorf("got key bytes in %q", err)
			}
		})
	}
}

func TestLoadPool(t *testing.T) {
	dir := initDev(t)
	ca := filepath.Join(dir, "ca.pem")
	garbage := writeFile(t, dir, "garbage.pem", []byte("nothing here"), 0o644)

	tests := []struct {
		name  string
		files []string
		want  string
	}{
		{"one bundle", []string{ca}, ""},
		{"two bundles", []string{ca, filepath.Join(dir, "server.pem")}, ""},
		{"missing file", []string{ca, filepath.Join(dir, "nope.pem")}, "no such file"},
		{"no certificate", []string{garbage}, "no PEM certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pool, err := LoadPool(tt.files...)
			if tt.want == "" {
				if err != nil || pool == nil {
					t.Fatalf("got %v, %v, want a pool", pool, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestKeyModeProblem(t *testing.T) {
	tests := []struct {
		mode os.FileMode
		want string
	}{
		{0o600, ""},
		{0o400, ""},
		{0o640, "(mode 0640); chmod 600 it"},
		{0o644, "readable by group or others (mode 0644)"},
		{0o604, "(mode 0604)"},
	}
	for _, tt := range tests {
		t.Run(tt.mode.String(), func(t *testing.T) {
			p := writeFile(t, t.TempDir(), "key.pem", []byte("k"), tt.mode)
			err := KeyModeProblem(p)
			if tt.want == "" {
				if err != nil {
					t.Errorf("got %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
	t.Run("missing", func(t *testing.T) {
		if err := KeyModeProblem(filepath.Join(t.TempDir(), "nope")); err == nil {
			t.Error("got nil, want an error")
		}
	})
}
