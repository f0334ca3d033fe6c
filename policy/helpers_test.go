package policy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/attlsd/attlsd/certs"
	"github.com/attlsd/attlsd/internal/smallfile"
)

// testDir returns a temporary policy folder whose certs/ subfolder holds
// the InitDev files plus:
//
//	other-key.pem  a key that matches no certificate
//	open-key.pem   server-key.pem with mode 0644
//	garbage.pem    text that is not PEM
//	expired/       InitDev files made on 2020-01-01: the leaves expired
//	               on 2020-12-31 00:00 UTC
//	future/        InitDev files made on 2999-01-01: the leaves are not
//	               valid before 2998-12-31 23:00 UTC
//	fifo.pem       a named pipe
//	zero.pem       a symbolic link to /dev/zero
//	huge.pem       a sparse file one byte over smallfile.MaxSize
func testDir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	certDir := filepath.Join(dir, "certs")
	for sub, made := range map[string]time.Time{
		"":        time.Now(),
		"expired": time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC),
		"future":  time.Date(2999, 1, 1, 0, 0, 0, 0, time.UTC),
	} {
		if _, err := certs.InitDev(filepath.Join(certDir, sub), nil, made); err != nil {
			t.Fatalf("InitDev: %v", err)
		}
	}
	writeTestFile(t, filepath.Join(certDir, "other-key.pem"), newKeyPEM(t), 0o600)
	key, err := os.ReadFile(filepath.Join(certDir, "server-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	writeTestFile(t, filepath.Join(certDir, "open-key.pem"), key, 0o644)
	writeTestFile(t, filepath.Join(certDir, "garbage.pem"), []byte("not PEM\n"), 0o644)
	specialFiles(t, certDir)
	return dir
}

// specialFiles makes fifo.pem, zero.pem and huge.pem in dir (see testDir).
func specialFiles(t testing.TB, dir string) {
	t.Helper()
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo.pem"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/dev/zero", filepath.Join(dir, "zero.pem")); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(dir, "huge.pem"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(smallfile.MaxSize + 1); err != nil {
		t.Fatal(err)
	}
}

// newKeyPEM returns a fresh ECDSA key in PKCS#8 PEM.
func newKeyPEM(t testing.TB) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// writeTestFile writes data with exactly mode, whatever the umask.
func writeTestFile(t testing.TB, path string, data []byte, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

// parseString parses src as a policy in dir and fails the test on errors.
func parseString(t *testing.T, dir, src string) *Policy {
	t.Helper()
	p, diags := Parse([]byte(src), "test.hcl", dir)
	if diags.HasErrors() {
		t.Fatalf("Parse:\n%s", FormatDiagnostics(diags))
	}
	return p
}

// x509Pool loads the development CA from dir/certs.
func x509Pool(t *testing.T, dir string) *x509.CertPool {
	t.Helper()
	pool, err := certs.LoadPool(filepath.Join(dir, "certs", "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	return pool
}

// handshake runs a TLS handshake over loopback TCP and returns the
// client's view of it.
func handshake(t *testing.T, server, client *tls.Config) tls.ConnectionState {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", server)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			err = c.(*tls.Conn).Handshake()
			c.Close()
		}
		done <- err
	}()
	c, err := tls.Dial("tcp", ln.Addr().String(), client)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	state := c.ConnectionState()
	c.Close()
	if err := <-done; err != nil {
		t.Fatalf("server handshake: %v", err)
	}
	return state
}
