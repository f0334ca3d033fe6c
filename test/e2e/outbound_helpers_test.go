package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Names in every outbound test policy.
const (
	outRule = "out"    // the port-mapped rule
	outEnv  = "client" // its environment
)

// outboundPolicy renders environment "client", which trusts the
// development CA and presents no certificate, and rule "out", which
// listens on 127.0.0.1:port and originates TLS to endpoint. envAttrs and
// ruleAttrs add to or override their settings.
func outboundPolicy(port int, endpoint string, envAttrs, ruleAttrs []string) string {
	env := append([]string{trustAttr(caFile())}, envAttrs...)
	return block("environment", outEnv, env...) +
		portMappedRule(outRule, port, endpoint, ruleAttrs...)
}

// portMappedRule renders an outbound rule in environment "client" that
// listens on 127.0.0.1:port and originates TLS to endpoint.
func portMappedRule(name string, port int, endpoint string, attrs ...string) string {
	base := []string{
		"port = " + itoa(port),
		`address = "127.0.0.1"`,
		"endpoint = " + quote(endpoint),
		"environment = " + quote(outEnv),
	}
	return block("outbound", name, append(base, attrs...)...)
}

// outboundDaemon runs attlsd with outboundPolicy on a fresh port.
func outboundDaemon(t *testing.T, endpoint string, envAttrs, ruleAttrs []string) *daemon {
	t.Helper()
	return startDaemon(t, "127.0.0.1", 1, func(p []int) string {
		return outboundPolicy(p[0], endpoint, envAttrs, ruleAttrs)
	})
}

// clientCertAttrs make an environment present the development client
// certificate.
func clientCertAttrs() []string {
	return []string{
		"certificate = " + quote(filepath.Join(certDir, "client.pem")),
		"private_key = " + quote(filepath.Join(certDir, "client-key.pem")),
	}
}

// tlsVersion pins an environment to one TLS version, "1.2" or "1.3".
func tlsVersion(v string) string { return "tls_versions = [" + quote(v) + "]" }

// trustAttr makes an environment trust only the CA in file.
func trustAttr(file string) string { return "trust = [" + quote(file) + "]" }

// endpointTLS is a server configuration with the development server
// certificate, for Go endpoints.
func endpointTLS(t *testing.T, dir string) *tls.Config {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, "server.pem"),
		filepath.Join(dir, "server-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{pair}}
}

// startTLSEndpoint runs a Go TLS server on 127.0.0.1 standing in for the
// remote service of an outbound rule, and returns its address. handle
// runs on each connection once its handshake is done; a connection whose
// handshake fails is dropped.
func startTLSEndpoint(t *testing.T, cfg *tls.Config, handle func(*tls.Conn)) string {
	t.Helper()
	ln, err := listenTLSEndpoint(t, "127.0.0.1:0", cfg, handle)
	if err != nil {
		t.Fatal(err)
	}
	return ln.Addr().String()
}

// listenTLSEndpoint is startTLSEndpoint on a given address; it returns
// the bind error so that callers can retry on another port.
func listenTLSEndpoint(t *testing.T, addr string, cfg *tls.Config,
	handle func(*tls.Conn)) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(ioTimeout))
				tc := tls.Server(c, cfg)
				if tc.Handshake() == nil {
					handle(tc)
				}
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return ln, nil
}

// startSilentEndpoint accepts TCP connections on 127.0.0.1 and never says
// a word on them, and returns its address.
func startSilentEndpoint(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var held []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	})
	return ln.Addr().String()
}

// closedEndpoint returns a 127.0.0.1 address where nothing listens.
func closedEndpoint(t *testing.T) string {
	return "127.0.0.1:" + itoa(freePorts(t, "127.0.0.1", 1)[0])
}

// startSServer runs openssl s_server on a free 127.0.0.1 port in -www
// mode, which answers an HTTP request with a page describing the session
// (version, cipher, and the client certificate it verified, if any), and
// returns its address.
func startSServer(t *testing.T, args ...string) string {
	t.Helper()
	_, addr := runSServer(t, args...)
	return addr
}

// runSServer is startSServer that also returns the process, whose output
// holds the -trace of each handshake when args ask for it.
func runSServer(t *testing.T, args ...string) (*proc, string) {
	t.Helper()
	openssl := needTool(t, "openssl", "openssl")
	return startListening(t, openssl, func(port int) []string {
		return append([]string{"s_server", "-accept", "127.0.0.1:" + itoa(port), "-www"},
			args...)
	})
}

// certArgs are the s_server arguments that serve the server certificate
// of a PKI folder.
func certArgs(dir string) []string {
	return []string{"-cert", filepath.Join(dir, "server.pem"),
		"-key", filepath.Join(dir, "server-key.pem")}
}

// appRoundTrip connects to addr as a cleartext app, sends request, ends
// its side with a TCP half-close and reads the reply to its end. It
// returns the reply and the app's address as attlsd logs it.
func appRoundTrip(t *testing.T, addr string, request []byte) ([]byte, string) {
	t.Helper()
	c := dialTCP(t, addr)
	if _, err := c.Write(request); err != nil {
		t.Fatalf("app write: %v", err)
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatalf("app half-close: %v", err)
	}
	reply, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("app read: got %v after %q, want the reply then EOF", err, reply)
	}
	return reply, c.LocalAddr().String()
}

// newPKI runs attlsd certs init into a fresh folder, with extra host
// names on the server certificate, and returns the folder.
func newPKI(t *testing.T, hosts ...string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "pki")
	args := []string{"certs", "init", dir}
	if len(hosts) > 0 {
		args = append(args, "--hosts", strings.Join(hosts, ","))
	}
	if out, err := exec.Command(attlsdBin, args...).CombinedOutput(); err != nil {
		t.Fatalf("attlsd certs init: %v\n%s", err, out)
	}
	return dir
}

// serverSpec says what serverPKI makes.
type serverSpec struct {
	curve      elliptic.Curve // of the server key; nil: P-256
	expired    bool           // the certificate expired a day ago
	selfSigned bool           // no CA: ca.pem is the server certificate itself
}

// serverPKI writes a CA and, signed by it, a server certificate for
// localhost, 127.0.0.1 and ::1 as spec says, in the file names of attlsd
// certs init, and returns the folder.
func serverPKI(t *testing.T, spec serverSpec) string {
	t.Helper()
	dir := t.TempDir()
	now := time.Now()
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: "attlsd e2e server"},
		NotBefore:   now.Add(-time.Hour),
		NotAfter:    now.Add(24 * time.Hour),
		DNSNames:    []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if spec.expired {
		tmpl.NotBefore, tmpl.NotAfter = now.Add(-72*time.Hour), now.Add(-24*time.Hour)
	}
	var caKey *ecdsa.PrivateKey
	var caCert *x509.Certificate
	if !spec.selfSigned {
		caKey, caCert = newCert(t, nil, &x509.Certificate{
			Subject:               pkix.Name{CommonName: "attlsd e2e CA"},
			NotBefore:             now.Add(-time.Hour),
			NotAfter:              now.Add(24 * time.Hour),
			IsCA:                  true,
			BasicConstraintsValid: true,
			KeyUsage:              x509.KeyUsageCertSign,
		}, nil, nil)
	}
	key, cert := newCert(t, spec.curve, tmpl, caCert, caKey)
	if caCert == nil {
		caCert = cert
	}

	writePEM(t, filepath.Join(dir, "ca.pem"), "CERTIFICATE", caCert.Raw)
	writePEM(t, filepath.Join(dir, "server.pem"), "CERTIFICATE", cert.Raw)
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, filepath.Join(dir, "server-key.pem"), "PRIVATE KEY", der)
	return dir
}

// newCert makes a key on curve (nil: P-256) and a certificate for it from
// tmpl, signed by parent with parentKey, or self-signed when parent is
// nil.
func newCert(t *testing.T, curve elliptic.Curve, tmpl, parent *x509.Certificate,
	parentKey *ecdsa.PrivateKey) (*ecdsa.PrivateKey, *x509.Certificate) {
	t.Helper()
	if curve == nil {
		curve = elliptic.P256()
	}
	key, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber = serial
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return key, cert
}

// writePEM writes one PEM block to file, readable by its owner only.
func writePEM(t *testing.T, file, typ string, der []byte) {
	t.Helper()
	b := pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// needHostsNamespace skips the test unless attlsd can be run with a
// private /etc/hosts: that takes root and unshare(1), and a kernel that
// lets root make a mount namespace. Under ATTLSD_E2E_STRICT=1 it fails
// the test instead.
func needHostsNamespace(t *testing.T) string {
	t.Helper()
	const why = "needs root for a private /etc/hosts mount namespace"
	if os.Geteuid() != 0 {
		missing(t, fmt.Sprintf("%s; running as uid %d", why, os.Geteuid()))
	}
	unshare := needTool(t, "unshare", "util-linux")
	probe := exec.Command(unshare, "--mount", "--propagation", "private", "true")
	if out, err := probe.CombinedOutput(); err != nil {
		missing(t, fmt.Sprintf("%s; unshare --mount: %v: %s", why, err,
			strings.TrimSpace(string(out))))
	}
	return unshare
}

// withHosts is the command prefix that runs a program in a mount
// namespace of its own where hostsFile is bind-mounted over /etc/hosts.
// Rewriting hostsFile in place (same inode) changes what the program
// resolves; replacing it does not. The program replaces the shell, so
// signals sent to the process reach it.
func withHosts(unshare, hostsFile string) []string {
	return []string{unshare, "--mount", "--propagation", "private",
		"sh", "-c", `mount --bind "$0" /etc/hosts && exec "$@"`, hostsFile}
}

// startDaemonWithHosts is startDaemon for a daemon that sees hostsFile as
// its /etc/hosts (see withHosts).
func startDaemonWithHosts(t *testing.T, unshare, hostsFile string, nports int,
	makePolicy func(ports []int) string) *daemon {
	t.Helper()
	dir := t.TempDir()
	for try := 1; ; try++ {
		ports := freePorts(t, "127.0.0.1", nports)
		file := filepath.Join(dir, "policy.hcl")
		writeFile(t, file, makePolicy(ports))
		args := append(withHosts(unshare, hostsFile),
			attlsdBin, "run", "--policy", file, "--log-level", "debug")
		d, err := launchCmd(exec.Command(args[0], args[1:]...), file, ports)
		if err == nil {
			t.Cleanup(func() { d.stop(t) })
			return d
		}
		if !errors.Is(err, errAddrInUse) || try == bindRetries {
			t.Fatalf("start attlsd with a private /etc/hosts: %v\npolicy:\n%s",
				err, makePolicy(ports))
		}
	}
}
