package e2e

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// scanTimeout bounds one run of a scanner; testssl takes half a minute
// against one listener.
const scanTimeout = 5 * time.Minute

// testsslChecks are the testssl checks the surface audit runs: protocols
// (over its own sockets, SSLv2 and SSLv3 included), cipher categories,
// forward secrecy, renegotiation, compression, and every cipher per
// protocol (-E), which names each suite's key exchange.
var testsslChecks = []string{"--protocols", "--std", "--fs", "--renegotiation",
	"--compression", "-E"}

// fault is one thing a scanner saw that the TLS surface must not have.
type fault struct {
	Subject string // a protocol, a cipher, or a check
	Problem string
}

func (f fault) String() string { return f.Subject + ": " + f.Problem }

// audit is what one scan found: the protocols and ciphers offered, and
// the faults among them.
type audit struct {
	Protocols []string // offered, as the tool spells them
	Ciphers   []string // accepted, OpenSSL names
	Faults    []fault
}

func (a *audit) fail(subject, format string, args ...any) {
	a.Faults = append(a.Faults, fault{subject, fmt.Sprintf(format, args...)})
}

// cipherFaults says what is wrong with a cipher suite, by its OpenSSL
// name ("ECDHE-RSA-AES128-GCM-SHA256"; OpenSSL keeps the IANA names of
// TLS 1.3 suites, "TLS_AES_128_GCM_SHA256", all forward secret and AEAD).
// A good suite has an ephemeral (EC)DHE key exchange, authentication, and
// an AEAD.
func cipherFaults(name string) []string {
	var out []string
	has := func(words ...string) bool {
		return slices.ContainsFunc(words, func(w string) bool { return strings.Contains(name, w) })
	}
	anon := strings.HasPrefix(name, "ADH-") || strings.HasPrefix(name, "AECDH-") || has("anon")
	tls13 := strings.HasPrefix(name, "TLS_")
	if has("NULL") {
		out = append(out, "no encryption (NULL)")
	}
	if anon {
		out = append(out, "anonymous: no authentication")
	}
	if has("EXP") {
		out = append(out, "export grade")
	}
	if has("RC4", "DES", "RC2", "IDEA", "MD5") {
		out = append(out, "weak cipher or MAC (RC4, DES, 3DES, RC2, IDEA or MD5)")
	}
	ephemeral := strings.HasPrefix(name, "ECDHE-") || strings.HasPrefix(name, "DHE-") ||
		strings.HasPrefix(name, "EDH-")
	if !tls13 && !anon && !ephemeral {
		out = append(out, "no forward secrecy (static key exchange)")
	}
	if !tls13 && !has("GCM", "CHACHA20-POLY1305", "CCM") {
		out = append(out, "no AEAD (CBC with an HMAC)")
	}
	return out
}

// goodProtocol reports whether a protocol name (sslscan's "TLSv1.2",
// testssl's "TLS1_2") is TLS 1.2 or 1.3.
func goodProtocol(p string) bool {
	switch p {
	case "TLSv1.2", "TLSv1.3", "TLS1_2", "TLS1_3":
		return true
	}
	return false
}

// ---- sslscan --xml ----

type sslscanDoc struct {
	Errors []string      `xml:"error"`
	Tests  []sslscanTest `xml:"ssltest"`
}

type sslscanTest struct {
	Protocols []struct {
		Type    string `xml:"type,attr"`
		Version string `xml:"version,attr"`
		Enabled string `xml:"enabled,attr"`
	} `xml:"protocol"`
	Renegotiation []struct {
		Supported string `xml:"supported,attr"`
		Secure    string `xml:"secure,attr"`
	} `xml:"renegotiation"`
	Compression []struct {
		Supported string `xml:"supported,attr"`
	} `xml:"compression"`
	Heartbleed []struct {
		Version    string `xml:"sslversion,attr"`
		Vulnerable string `xml:"vulnerable,attr"`
	} `xml:"heartbleed"`
	Ciphers []struct {
		Version  string `xml:"sslversion,attr"`
		Name     string `xml:"cipher,attr"`
		Bits     int    `xml:"bits,attr"`
		Strength string `xml:"strength,attr"`
	} `xml:"cipher"`
}

// parseSSLScan reads sslscan's XML report of one host. It is an error
// when the scan did not reach a TLS service; anything wrong with the
// service is a fault. sslscan checks compression only when its OpenSSL
// was built with zlib (Debian's is not); testssl checks it over its own
// sockets.
func parseSSLScan(b []byte) (*audit, error) {
	var doc sslscanDoc
	if err := xml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("parse sslscan XML: %w", err)
	}
	if len(doc.Errors) > 0 {
		return nil, fmt.Errorf("sslscan: %s", strings.TrimSpace(strings.Join(doc.Errors, "; ")))
	}
	if len(doc.Tests) != 1 {
		return nil, fmt.Errorf("sslscan: got %d ssltest elements, want 1", len(doc.Tests))
	}
	st := doc.Tests[0]
	if len(st.Protocols) == 0 || len(st.Renegotiation) == 0 {
		return nil, errors.New("sslscan: no protocol or renegotiation results")
	}
	a := &audit{}
	st.protocols(a)
	st.options(a)
	st.ciphers(a)
	return a, nil
}

func (st *sslscanTest) protocols(a *audit) {
	for _, p := range st.Protocols {
		if p.Enabled != "1" {
			continue
		}
		name := strings.ToUpper(p.Type) + "v" + p.Version // SSLv3, TLSv1.0
		a.Protocols = append(a.Protocols, name)
		if !goodProtocol(name) {
			a.fail(name, "offered; nothing below TLS 1.2 may be")
		}
	}
}

func (st *sslscanTest) options(a *audit) {
	for _, r := range st.Renegotiation {
		if r.Supported == "1" {
			a.fail("renegotiation", "supported (secure=%s)", r.Secure)
		}
	}
	for _, c := range st.Compression {
		if c.Supported == "1" {
			a.fail("compression", "supported (CRIME)")
		}
	}
	for _, h := range st.Heartbleed {
		if h.Vulnerable == "1" {
			a.fail("heartbleed", "vulnerable under %s", h.Version)
		}
	}
}

func (st *sslscanTest) ciphers(a *audit) {
	for _, c := range st.Ciphers {
		a.Ciphers = append(a.Ciphers, c.Name)
		subject := c.Name + " (" + c.Version + ")"
		for _, p := range cipherFaults(c.Name) {
			a.fail(subject, "%s", p)
		}
		switch c.Strength {
		case "null", "anonymous", "weak", "medium":
			a.fail(subject, "sslscan rates it %s", c.Strength)
		}
		if c.Bits < 128 {
			a.fail(subject, "%d-bit encryption", c.Bits)
		}
	}
}

// ---- testssl --jsonfile ----

// testsslFinding is one entry of testssl's flat JSON file.
type testsslFinding struct {
	ID       string `json:"id"`
	Severity string `json:"severity"`
	Finding  string `json:"finding"`
}

// testsslRequired are the findings a complete run of testsslChecks has;
// the forward secrecy one is "PFS" in testssl 3.0 and "FS" later.
var testsslRequired = []string{"SSLv2", "SSLv3", "TLS1", "TLS1_1", "TLS1_2", "TLS1_3",
	"cipherlist_NULL", "cipherlist_aNULL", "cipherlist_EXPORT", "cipherlist_LOW",
	"secure_renego", "secure_client_renego", "CRIME_TLS"}

// parseTestSSL reads testssl's flat JSON findings for one host. It is an
// error when the scan failed or left out a check; anything wrong with the
// service is a fault.
func parseTestSSL(b []byte) (*audit, error) {
	var fs []testsslFinding
	if err := json.Unmarshal(b, &fs); err != nil {
		return nil, fmt.Errorf("parse testssl JSON: %w", err)
	}
	if err := testsslComplete(fs); err != nil {
		return nil, err
	}
	a := &audit{}
	for _, f := range fs {
		a.testssl(f)
	}
	return a, nil
}

// testsslComplete checks that the run reached the service and did every
// check.
func testsslComplete(fs []testsslFinding) error {
	ids := map[string]bool{}
	ciphers := 0
	for _, f := range fs {
		if f.Severity == "FATAL" || f.ID == "scanProblem" {
			return fmt.Errorf("testssl: %s: %s", f.ID, f.Finding)
		}
		ids[f.ID] = true
		if strings.HasPrefix(f.ID, "cipher-") {
			ciphers++
		}
	}
	for _, id := range testsslRequired {
		if !ids[id] {
			return fmt.Errorf("testssl: no %q finding", id)
		}
	}
	if !ids["PFS"] && !ids["FS"] {
		return errors.New("testssl: no forward secrecy finding")
	}
	if ciphers == 0 {
		return errors.New("testssl: no cipher-* finding (run with -E)")
	}
	return nil
}

// testssl judges one finding.
func (a *audit) testssl(f testsslFinding) {
	offered := !strings.HasPrefix(f.Finding, "not offered")
	switch id := f.ID; {
	case slices.Contains([]string{"SSLv2", "SSLv3", "TLS1", "TLS1_1", "TLS1_2", "TLS1_3"}, id):
		if offered {
			a.Protocols = append(a.Protocols, id)
		}
		if offered && !goodProtocol(id) {
			a.fail(id, "%s; nothing below TLS 1.2 may be", f.Finding)
		}
	case strings.HasPrefix(id, "cipherlist_"):
		if offered && id != "cipherlist_STRONG" {
			a.fail(id, "%s", f.Finding)
		}
	case strings.HasPrefix(id, "cipher-"):
		a.testsslCipher(f)
	case id == "PFS" || id == "FS":
		if !strings.HasPrefix(f.Finding, "offered") || f.Severity != "OK" {
			a.fail(id, "forward secrecy: %s (%s)", f.Finding, f.Severity)
		}
	case id == "secure_client_renego" || id == "CRIME_TLS":
		if !strings.HasPrefix(f.Finding, "not vulnerable") {
			a.fail(id, "%s", f.Finding)
		}
	case id == "secure_renego":
		if f.Finding != "supported" {
			a.fail(id, "RFC 5746: %s", f.Finding)
		}
	default:
		// Anything else testssl rates as a risk counts too.
		if slices.Contains([]string{"LOW", "MEDIUM", "HIGH", "CRITICAL"}, f.Severity) {
			a.fail(id, "%s (%s)", f.Finding, f.Severity)
		}
	}
}

// testsslCipher judges one "cipher-<proto>_x<hex>" finding of -E, whose
// text is a row of columns: protocol, hex code, OpenSSL name, key
// exchange, encryption, bits, IANA name.
func (a *audit) testsslCipher(f testsslFinding) {
	i := strings.LastIndex(f.ID, "_x")
	if i < len("cipher-") {
		a.fail(f.ID, "unreadable cipher id")
		return
	}
	proto, hex := f.ID[len("cipher-"):i], f.ID[i+2:]
	cols := strings.Fields(f.Finding)
	at := slices.Index(cols, "x"+hex)
	if at < 0 || at+1 >= len(cols) {
		a.fail(f.ID, "unreadable cipher row %q", f.Finding)
		return
	}
	name := cols[at+1]
	a.Ciphers = append(a.Ciphers, name)
	subject := name + " (" + proto + ")"
	for _, p := range cipherFaults(name) {
		a.fail(subject, "%s", p)
	}
}

// ---- running the scanners ----

// scan runs a scanner bounded by scanTimeout and returns its stdout.
func scan(t *testing.T, name string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), scanTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if ctx.Err() != nil {
		t.Fatalf("%s did not finish within %s\nstderr: %s", name, scanTimeout, stderr.String())
	}
	if err != nil {
		t.Fatalf("%s %q: %v\nstdout: %s\nstderr: %s", name, args, err, out, stderr.String())
	}
	return out
}

// sslscanAudit scans addr (host:port) with sslscan and judges its report.
func sslscanAudit(t *testing.T, addr string) (*audit, []byte) {
	t.Helper()
	bin := needTool(t, "sslscan", "sslscan")
	report := scan(t, bin, "--xml=-", "--no-colour", addr)
	a, err := parseSSLScan(report)
	if err != nil {
		t.Fatalf("%v\nreport:\n%s", err, report)
	}
	return a, report
}

// testsslAudit scans addr with testssl's testsslChecks and judges its
// JSON findings.
func testsslAudit(t *testing.T, addr string) (*audit, []byte) {
	t.Helper()
	bin := needTool(t, "testssl", "testssl.sh")
	file := filepath.Join(t.TempDir(), "testssl.json")
	args := append([]string{"--quiet", "--color", "0", "--warnings", "off", "--nodns", "none",
		"--connect-timeout", "10", "--openssl-timeout", "10", "--jsonfile", file},
		testsslChecks...)
	scan(t, bin, append(args, addr)...)
	report, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("testssl wrote no JSON file: %v", err)
	}
	a, err := parseTestSSL(report)
	if err != nil {
		t.Fatalf("%v\nreport:\n%s", err, report)
	}
	return a, report
}

// rsaPair writes an RSA 2048 server certificate for localhost and
// 127.0.0.1, signed by the development CA, into dir and returns the
// certificate and key files.
func rsaPair(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ca, caKey := loadDevCA(t)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "attlsd e2e RSA server"},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "rsa.pem"), filepath.Join(dir, "rsa-key.pem")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(key))
	return certFile, keyFile
}
