package e2e

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// secret is one spelling of part of a private key.
type secret struct {
	what  string // "ecdsa PEM line 2", "rsa D in decimal", ...
	bytes []byte
}

// keySecrets returns every spelling of the key in file that must never
// be shown: the PEM text, each of its base64 lines, the DER as base64,
// raw and in hex, and the private numbers raw, in hex and in decimal.
func keySecrets(t *testing.T, name, file string) []secret {
	t.Helper()
	text, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(text)
	if block == nil {
		t.Fatalf("no PEM block in %s", file)
	}
	der := block.Bytes
	out := []secret{{name + " PEM text", text}, {name + " DER", der},
		{name + " DER in base64", []byte(base64.StdEncoding.EncodeToString(der))}}
	out = append(out, hexSpellings(name+" DER", der)...)
	for i, line := range strings.Split(string(text), "\n") {
		// A short last line could match by chance; 16 characters cannot.
		if len(line) >= 16 && !strings.HasPrefix(line, "-----") {
			out = append(out, secret{fmt.Sprintf("%s PEM line %d", name, i+1), []byte(line)})
		}
	}
	for part, n := range privateNumbers(t, der) {
		out = append(out, secret{name + " " + part + " in decimal", []byte(n.String())},
			secret{name + " " + part, n.Bytes()})
		out = append(out, hexSpellings(name+" "+part, n.Bytes())...)
	}
	return out
}

// hexSpellings is b in lower and upper case hex.
func hexSpellings(what string, b []byte) []secret {
	h := hex.EncodeToString(b)
	return []secret{{what + " in hex", []byte(h)}, {what + " in HEX", []byte(strings.ToUpper(h))}}
}

// privateNumbers parses a PKCS#8 or PKCS#1 key and returns its private
// numbers: the ECDSA scalar, or RSA's exponent, primes and CRT values.
func privateNumbers(t *testing.T, der []byte) map[string]*big.Int {
	t.Helper()
	key, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		key, err = x509.ParsePKCS1PrivateKey(der)
	}
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		return map[string]*big.Int{"D": k.D}
	case *rsa.PrivateKey:
		return map[string]*big.Int{"D": k.D, "P": k.Primes[0], "Q": k.Primes[1],
			"Dp": k.Precomputed.Dp, "Dq": k.Precomputed.Dq, "Qinv": k.Precomputed.Qinv}
	}
	t.Fatalf("parse key: %T, %v", key, err)
	return nil
}

// shown collects everything attlsd printed or served, by where it came
// from.
type shown map[string][]byte

func (s shown) add(where string, b []byte) { s[where] = append(s[where], b...) }

// checkNoSecrets fails the test for every secret found in what was shown.
func checkNoSecrets(t *testing.T, s shown, secrets []secret) {
	t.Helper()
	for where, b := range s {
		for _, sec := range secrets {
			if bytes.Contains(b, sec.bytes) {
				t.Errorf("%s shows the %s", where, sec.what)
			}
		}
	}
}

// TestKeysNeverShown runs attlsd with an ECDSA and an RSA key, drives it
// through traffic, rejected reloads of broken key pairs (a key that does
// not match, a certificate path naming the key, a key path naming the
// certificate, the key's DER labelled as a certificate, a key as trust),
// `attlsd check` and `attlsd show` of each, and every admin route, and
// checks that no spelling of either private key appears in anything
// attlsd printed or served.
func TestKeysNeverShown(t *testing.T) {
	dir := t.TempDir()
	ecCert, ecKey := filepath.Join(certDir, "server.pem"), filepath.Join(certDir, "server-key.pem")
	rsaCert, rsaKey := rsaPair(t, dir)
	secrets := append(keySecrets(t, "ecdsa", ecKey), keySecrets(t, "rsa", rsaKey)...)
	keyAsCert := filepath.Join(dir, "key-as-cert.pem")
	writePEM(t, keyAsCert, "CERTIFICATE", readPEMBlock(t, ecKey))

	pair := func(cert, key string, more ...string) string {
		return block("environment", "web", append([]string{"certificate = " + quote(cert),
			"private_key = " + quote(key)}, more...)...)
	}
	backend := startBackend(t, answerHTTP("ok"))
	policyWith := func(p []int, web string) string {
		return web + block("environment", "rsa", "certificate = "+quote(rsaCert),
			"private_key = "+quote(rsaKey)) +
			inbound("ecdsa", p[0], backend.addr) +
			inbound("rsa", p[1], backend.addr, `environment = "rsa"`)
	}
	out := shown{}
	d, admin, stdout := startShowing(t, func(p []int) string {
		return policyWith(p, pair(ecCert, ecKey))
	})

	exerciseTraffic(t, d, admin, out)
	broken := []struct{ name, web, word string }{
		{"mismatched-pair", pair(ecCert, rsaKey), "does not match"},
		{"certificate-is-key", pair(ecKey, ecKey), "no PEM certificate"},
		{"key-is-certificate", pair(ecCert, ecCert), "holds a certificate"},
		{"key-der-as-certificate", pair(keyAsCert, ecKey), "parse certificate"},
		{"key-as-trust", pair(ecCert, ecKey, "trust = ["+quote(ecKey)+"]"), "no PEM certificate"},
	}
	for _, b := range broken {
		t.Run(b.name, func(t *testing.T) {
			text := policyWith(d.ports, b.web)
			cliShows(t, out, b.name, text, b.word)
			rejectedReload(t, d, admin, out, b.name, text, b.word)
		})
	}
	good := policyWith(d.ports, pair(ecCert, ecKey))
	cliShows(t, out, "good", good, "")
	writeFile(t, d.policy, good)
	if code, body := doHTTP(t, http.MethodPost, admin+"/reload"); code != 200 {
		t.Fatalf("POST /reload of the good policy: got %d %s, want 200", code, body)
	}

	d.stop(t)
	out.add("attlsd run stderr", []byte(d.log.text()))
	out.add("attlsd run stdout", stdout.Bytes())
	checkNoSecrets(t, out, secrets)
}

// startShowing starts attlsd on two fresh TLS ports with --admin on a
// third, and returns it with the admin base URL and its stdout, complete
// once it has stopped.
func startShowing(t *testing.T, makePolicy func(p []int) string) (*daemon, string, *bytes.Buffer) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "policy.hcl")
	for try := 1; ; try++ {
		ports := freePorts(t, "127.0.0.1", 3)
		admin := "127.0.0.1:" + itoa(ports[2])
		writeFile(t, file, makePolicy(ports))
		cmd := exec.Command(attlsdBin, "run", "--policy", file, "--log-level", "debug",
			"--drain-timeout", "1s", "--admin", admin)
		var stdout bytes.Buffer
		cmd.Stdout = &stdout
		d, err := launchCmd(cmd, file, ports[:2])
		if err == nil {
			t.Cleanup(func() { d.stop(t) })
			return d, "http://" + admin, &stdout
		}
		if !errors.Is(err, errAddrInUse) || try == bindRetries {
			t.Fatalf("start attlsd: %v", err)
		}
	}
}

// exerciseTraffic makes requests on both rules (curl, and Go's client),
// one refused handshake, and reads every admin route while a connection
// is open.
func exerciseTraffic(t *testing.T, d *daemon, admin string, out shown) {
	t.Helper()
	for i := range 2 {
		u, resolve := httpsURL(d.addr("127.0.0.1", i))
		if res := curl(t, u, resolve...); res.code != 0 || res.body != "ok" {
			t.Fatalf("curl %s: exit %d, body %q, stderr %s", u, res.code, res.body, res.stderr)
		}
	}
	old := clientTLS(t)
	old.MaxVersion = tls.VersionTLS11
	if c, err := tls.Dial("tcp", d.addr("127.0.0.1", 0), old); err == nil {
		c.Close()
		t.Error("TLS 1.1 client: got a handshake, want a refusal")
	}

	open := dialTLS(t, d.addr("127.0.0.1", 1), clientTLS(t))
	defer open.Close()
	for _, route := range []string{"/healthz", "/readyz", "/metrics", "/policy", "/connections"} {
		code, body := get(t, admin+route)
		if code != 200 {
			t.Errorf("GET %s: got %d, want 200", route, code)
		}
		out.add("GET "+route, []byte(body))
	}
}

// cliShows runs attlsd check, show and show --json on policy text; word
// is in check's stderr when the policy is broken ("" when it is good).
func cliShows(t *testing.T, out shown, name, text, word string) {
	t.Helper()
	file := filepath.Join(t.TempDir(), name+".hcl")
	writeFile(t, file, text)
	for _, args := range [][]string{{"check"}, {"show"}, {"show", "--json"}} {
		stdout, stderr, code := run(t, "", attlsdBin, append(args, file)...)
		cmd := "attlsd " + strings.Join(args, " ") + " (" + name + ")"
		out.add(cmd+" stdout", []byte(stdout))
		out.add(cmd+" stderr", []byte(stderr))
		if wantCode := map[bool]int{true: 0, false: 1}[word == ""]; code != wantCode {
			t.Errorf("%s: got exit %d, want %d\nstderr: %s", cmd, code, wantCode, stderr)
		}
		if !strings.Contains(stderr, word) {
			t.Errorf("%s: stderr %q lacks %q", cmd, stderr, word)
		}
	}
}

// rejectedReload writes the broken policy over the running one and asks
// for a reload: it must be refused with the diagnostic, by the admin
// endpoint and in the log.
func rejectedReload(t *testing.T, d *daemon, admin string, out shown, name, text, word string) {
	t.Helper()
	from := d.mark()
	writeFile(t, d.policy, text)
	code, body := doHTTP(t, http.MethodPost, admin+"/reload")
	out.add("POST /reload ("+name+")", []byte(body))
	if code != 422 || !strings.Contains(body, word) {
		t.Errorf("POST /reload: got %d %q, want 422 with %q", code, body, word)
	}
	d.waitLog(t, logTimeout, from, "the rejected reload's diagnostic", func(ls []logLine) bool {
		for _, l := range ls {
			if strings.Contains(l.String(), word) {
				return true
			}
		}
		return false
	})
}
