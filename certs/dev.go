package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Validity periods of development certificates.
const (
	devCAValidity   = 10 * 365 * 24 * time.Hour
	devLeafValidity = 365 * 24 * time.Hour
	// devBackdate lets a peer with a slightly slow clock accept the
	// certificates right away.
	devBackdate = time.Hour
)

// devFileNames are the files InitDev writes, in the order it returns them.
var devFileNames = []string{
	"ca.pem", "ca-key.pem",
	"server.pem", "server-key.pem",
	"client.pem", "client-key.pem",
}

// issued is a freshly signed certificate and its key.
type issued struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// InitDev writes a development CA and, signed by it, a server and a client
// certificate into dir, creating dir if needed. The server certificate
// names localhost, 127.0.0.1 and ::1 plus hosts (IP addresses become IP
// SANs, DNS names DNS SANs). Keys are ECDSA P-256 in PKCS#8 with mode
// 0600. It returns the paths written, CA first.
//
// InitDev writes nothing when a host is neither (see CheckHost); its error
// names each such host. It never overwrites: when any of its files is
// already in dir it writes nothing and returns an error for which
// errors.Is(err, fs.ErrExist) is true.
func InitDev(dir string, hosts []string, now time.Time) ([]string, error) {
	if err := checkHosts(hosts); err != nil {
		return nil, fmt.Errorf("init dev certificates: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("init dev certificates: %w", err)
	}
	if err := checkFree(dir); err != nil {
		return nil, fmt.Errorf("init dev certificates: %w", err)
	}
	set, err := issueDev(hosts, now)
	if err != nil {
		return nil, fmt.Errorf("init dev certificates: %w", err)
	}
	return writeDev(dir, set)
}

// checkFree fails when any file InitDev would write already exists.
func checkFree(dir string) error {
	for _, name := range devFileNames {
		p := filepath.Join(dir, name)
		_, err := os.Lstat(p)
		if err == nil {
			return &fs.PathError{Op: "create", Path: p, Err: fs.ErrExist}
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// issueDev makes the CA, server and client certificates, in that order.
func issueDev(hosts []string, now time.Time) ([]*issued, error) {
	ca, err := issue(caTemplate(now), nil)
	if err != nil {
		return nil, fmt.Errorf("make CA: %w", err)
	}
	server, err := issue(serverTemplate(hosts, now), ca)
	if err != nil {
		return nil, fmt.Errorf("make server certificate: %w", err)
	}
	client, err := issue(clientTemplate(now), ca)
	if err != nil {
		return nil, fmt.Errorf("make client certificate: %w", err)
	}
	return []*issued{ca, server, client}, nil
}

// issue makes a key and signs tmpl with parent, or self-signs when parent
// is nil.
func issue(tmpl *x509.Certificate, parent *issued) (*issued, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	if tmpl.SerialNumber, err = serial(); err != nil {
		return nil, err
	}
	signer, signerCert := key, tmpl
	if parent != nil {
		signer, signerCert = parent.key, parent.cert
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signerCert, &key.PublicKey, signer)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &issued{cert: cert, key: key}, nil
}

// serial returns a random positive 128-bit serial number.
func serial() (*big.Int, error) {
	one := big.NewInt(1)
	limit := new(big.Int).Lsh(one, 128)
	n, err := rand.Int(rand.Reader, limit.Sub(limit, one))
	if err != nil {
		return nil, fmt.Errorf("make serial number: %w", err)
	}
	return n.Add(n, one), nil
}

// caTemplate describes the development CA.
func caTemplate(now time.Time) *x509.Certificate {
	return &x509.Certificate{
		Subject:               pkix.Name{CommonName: "attlsd dev CA"},
		NotBefore:             now.Add(-devBackdate),
		NotAfter:              now.Add(devCAValidity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
}

// serverTemplate describes the development server certificate.
func serverTemplate(hosts []string, now time.Time) *x509.Certificate {
	t := leafTemplate("attlsd dev server", x509.ExtKeyUsageServerAuth, now)
	t.DNSNames = []string{"localhost"}
	t.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	for _, h := range hosts {
		addSAN(t, h)
	}
	return t
}

// addSAN adds host to t as an IP or DNS name unless it is already there.
func addSAN(t *x509.Certificate, host string) {
	if ip := net.ParseIP(host); ip != nil {
		for _, have := range t.IPAddresses {
			if have.Equal(ip) {
				return
			}
		}
		t.IPAddresses = append(t.IPAddresses, ip)
		return
	}
	for _, have := range t.DNSNames {
		if have == host {
			return
		}
	}
	t.DNSNames = append(t.DNSNames, host)
}

// clientTemplate describes the development client certificate.
func clientTemplate(now time.Time) *x509.Certificate {
	return leafTemplate("attlsd dev client", x509.ExtKeyUsageClientAuth, now)
}

// leafTemplate holds what the server and client certificates share.
func leafTemplate(cn string, usage x509.ExtKeyUsage, now time.Time) *x509.Certificate {
	return &x509.Certificate{
		Subject:     pkix.Name{CommonName: cn},
		NotBefore:   now.Add(-devBackdate),
		NotAfter:    now.Add(devLeafValidity),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{usage},
	}
}

// writeDev writes each certificate and its key as PEM files in dir, in
// the order of devFileNames.
func writeDev(dir string, set []*issued) ([]string, error) {
	var paths []string
	for i, is := range set {
		certPath := filepath.Join(dir, devFileNames[2*i])
		keyPath := filepath.Join(dir, devFileNames[2*i+1])
		if err := writeIssued(is, certPath, keyPath); err != nil {
			return paths, fmt.Errorf("init dev certificates: %w", err)
		}
		paths = append(paths, certPath, keyPath)
	}
	return paths, nil
}

// writeIssued writes one certificate (mode 0644) and its key (mode 0600).
func writeIssued(is *issued, certPath, keyPath string) error {
	der, err := x509.MarshalPKCS8PrivateKey(is.key)
	if err != nil {
		return fmt.Errorf("encode key: %w", err)
	}
	defer clear(der) // attlsd's copy of the key; the file has it now
	if err := writePEM(certPath, "CERTIFICATE", is.cert.Raw, 0o644); err != nil {
		return err
	}
	return writePEM(keyPath, "PRIVATE KEY", der, 0o600)
}

// writePEM creates path, failing if it exists, and writes one PEM block.
func writePEM(path, typ string, der []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if err := pem.Encode(f, &pem.Block{Type: typ, Bytes: der}); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Close()
}
