package certs

import (
	"crypto/x509"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// initDev runs InitDev in a fresh temporary folder and returns the folder.
func initDev(t *testing.T, hosts ...string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "certs")
	if _, err := InitDev(dir, hosts, time.Now()); err != nil {
		t.Fatalf("InitDev: %v", err)
	}
	return dir
}

func TestInitDevFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "dev")
	paths, err := InitDev(dir, nil, time.Now())
	if err != nil {
		t.Fatalf("InitDev: %v", err)
	}
	var want []string
	for _, n := range devFileNames {
		want = append(want, filepath.Join(dir, n))
	}
	if !slices.Equal(paths, want) {
		t.Fatalf("got paths %v, want %v", paths, want)
	}
	for _, p := range paths {
		t.Run(filepath.Base(p), func(t *testing.T) {
			fi, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			isKey := strings.HasSuffix(p, "-key.pem")
			if isKey && fi.Mode().Perm() != 0o600 {
				t.Errorf("got mode %04o, want 0600", fi.Mode().Perm())
			}
			if !isKey && fi.Mode().Perm()&0o022 != 0 {
				t.Errorf("got mode %04o, want no write bits for group or others",
					fi.Mode().Perm())
			}
		})
	}
}

func TestInitDevRoundTrip(t *testing.T) {
	now := time.Now()
	dir := initDev(t, "example.test", "192.0.2.7", "localhost")
	pool, err := LoadPool(filepath.Join(dir, "ca.pem"))
	if err != nil {
		t.Fatalf("LoadPool: %v", err)
	}
	tests := []struct {
		name  string
		usage x509.ExtKeyUsage
		host  string
	}{
		{"server", x509.ExtKeyUsageServerAuth, "example.test"},
		{"server", x509.ExtKeyUsageServerAuth, "192.0.2.7"},
		{"server", x509.ExtKeyUsageServerAuth, "::1"},
		{"server", x509.ExtKeyUsageServerAuth, "localhost"},
		{"client", x509.ExtKeyUsageClientAuth, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name+"/"+tt.host, func(t *testing.T) {
			pair, err := LoadPair(filepath.Join(dir, tt.name+".pem"),
				filepath.Join(dir, tt.name+"-key.pem"))
			if err != nil {
				t.Fatalf("LoadPair: %v", err)
			}
			if pair.Cert.Leaf != pair.Leaf {
				t.Errorf("got Cert.Leaf %p, want Leaf %p", pair.Cert.Leaf, pair.Leaf)
			}
			opts := x509.VerifyOptions{
				Roots:       pool,
				DNSName:     tt.host,
				CurrentTime: now,
				KeyUsages:   []x509.ExtKeyUsage{tt.usage},
			}
			if _, err := pair.Leaf.Verify(opts); err != nil {
				t.Errorf("verify: %v", err)
			}
		})
	}
}

func TestInitDevCertificates(t *testing.T) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	dir := filepath.Join(t.TempDir(), "dev")
	if _, err := InitDev(dir, []string{"10.1.2.3", "svc.local"}, now); err != nil {
		t.Fatal(err)
	}
	ca := readLeaf(t, filepath.Join(dir, "ca.pem"))
	server := readLeaf(t, filepath.Join(dir, "server.pem"))
	client := readLeaf(t, filepath.Join(dir, "client.pem"))

	tests := []struct {
		name     string
		cert     *x509.Certificate
		notAfter time.Time
		isCA     bool
		cn       string
	}{
		{"ca", ca, now.Add(devCAValidity), true, "attlsd dev CA"},
		{"server", server, now.Add(devLeafValidity), false, "attlsd dev server"},
		{"client", client, now.Add(devLeafValidity), false, "attlsd dev client"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.cert
			if want := now.Add(-time.Hour); !c.NotBefore.Equal(want) {
				t.Errorf("got NotBefore %v, want %v", c.NotBefore, want)
			}
			if !c.NotAfter.Equal(tt.notAfter) {
				t.Errorf("got NotAfter %v, want %v", c.NotAfter, tt.notAfter)
			}
			if c.IsCA != tt.isCA {
				t.Errorf("got IsCA %v, want %v", c.IsCA, tt.isCA)
			}
			if c.Subject.CommonName != tt.cn {
				t.Errorf("got CN %q, want %q", c.Subject.CommonName, tt.cn)
			}
			if c.SerialNumber.Sign() <= 0 || c.SerialNumber.BitLen() > 128 {
				t.Errorf("got serial %v, want a positive 128-bit number", c.SerialNumber)
			}
			if c.PublicKeyAlgorithm != x509.ECDSA {
				t.Errorf("got key algorithm %v, want ECDSA", c.PublicKeyAlgorithm)
			}
		})
	}

	t.Run("server SANs", func(t *testing.T) {
		if want := []string{"localhost", "svc.local"}; !slices.Equal(server.DNSNames, want) {
			t.Errorf("got DNS names %v, want %v", server.DNSNames, want)
		}
		want := []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback, net.ParseIP("10.1.2.3")}
		if !slices.EqualFunc(server.IPAddresses, want, net.IP.Equal) {
			t.Errorf("got IPs %v, want %v", server.IPAddresses, want)
		}
	})
	t.Run("serials differ", func(t *testing.T) {
		if server.SerialNumber.Cmp(client.SerialNumber) == 0 {
			t.Errorf("got equal serials %v", server.SerialNumber)
		}
	})
}

func TestInitDevExisting(t *testing.T) {
	tests := []struct {
		name    string
		present string
	}{
		{"ca present", "ca.pem"},
		{"client key present", "client-key.pem"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, tt.present)
			if err := os.WriteFile(p, []byte("keep me"), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := InitDev(dir, nil, time.Now())
			if !errors.Is(err, fs.ErrExist) {
				t.Fatalf("got error %v, want one wrapping fs.ErrExist", err)
			}
			if got, _ := os.ReadFile(p); string(got) != "keep me" {
				t.Errorf("got %s rewritten to %q", tt.present, got)
			}
			entries, _ := os.ReadDir(dir)
			if len(entries) != 1 {
				t.Errorf("got %d files, want only %s", len(entries), tt.present)
			}
		})
	}
}

// readLeaf returns the first certificate in a PEM file.
func readLeaf(t *testing.T, file string) *x509.Certificate {
	t.Helper()
	chain, err := ReadCerts(file)
	if err != nil {
		t.Fatal(err)
	}
	return chain[0]
}

// TestCheckHost accepts IP addresses and DNS names, wildcards included,
// and refuses the rest with the host named in the error.
func TestCheckHost(t *testing.T) {
	long := strings.Repeat("a", 63)
	tests := []struct {
		host string
		want string // a part of the error; "" wants none
	}{
		{"example.test", ""},
		{"*.example.test", ""},
		{"API-1.Example.test", ""},
		{"xn--bcher-kva.example", ""},
		{"localhost", ""},
		{long + ".test", ""},
		{"192.0.2.7", ""},
		{"2001:db8::1", ""},
		{"::ffff:192.0.2.7", ""},
		{"bad name", "neither an IP address nor a DNS name"},
		{"1.2.3.999", "is not a valid IPv4 address"},
		{"10.1", "is not a valid IPv4 address"},
		{"2001:db8::g", "is not a valid IPv6 address"},
		{"fe80::1%eth0", "has a zone"},
		{"", "is empty"},
		{"*", "neither an IP address nor a DNS name"},
		{"*.", "neither"},
		{"*.*.example", "neither"},
		{"a.*.example", "neither"},
		{"a..b", "neither"},
		{".a", "neither"},
		{"a.", "neither"},
		{"-a.test", "neither"},
		{"a-.test", "neither"},
		{"under_score.test", "neither"},
		{"http://example.test", "is a URL"},
		{"example.test:443", "is not a valid IPv6 address"},
		{long + "a.test", "neither"},
		{strings.Repeat("a.", 127) + "test", "longer than 253 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.host, func(t *testing.T) {
			err := CheckHost(tt.host)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("got %v, want no error", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want) ||
				!strings.Contains(err.Error(), strconv.Quote(tt.host))):
				t.Errorf("got %v, want an error naming %q that holds %q", err, tt.host, tt.want)
			}
		})
	}
}

// TestInitDevBadHosts: one bad host among good ones makes InitDev refuse
// before it writes anything, naming every bad host.
func TestInitDevBadHosts(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "dev")
	_, err := InitDev(dir, []string{"ok.test", "bad name", "1.2.3.999"}, time.Now())
	if err == nil {
		t.Fatal("got no error, want one naming the bad hosts")
	}
	for _, h := range []string{`"bad name"`, `"1.2.3.999"`} {
		if !strings.Contains(err.Error(), h) {
			t.Errorf("got %q, want it to name %s", err, h)
		}
	}
	if strings.Contains(err.Error(), "ok.test") {
		t.Errorf("got %q, want the good host left out", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("folder: got %v, want it not made", err)
	}
}
