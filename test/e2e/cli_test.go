package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestCheck runs attlsd check on a good policy, on one with two mistakes,
// on one whose only problem is a warning, and on one whose port the test
// holds. The good one passes with a summary on stdout; the broken one
// fails with each mistake on its own file:line:col line; warnings are
// printed the same way but do not fail the check; and since check binds
// nothing, a port in use does not fail it either.
func TestCheck(t *testing.T) {
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	heldPort := itoa(held.Addr().(*net.TCPAddr).Port)

	tests := []struct {
		name    string
		policy  string
		prepare func(t *testing.T, dir string) // adjusts the copied certificates
		// wantCode is the exit status; wantSummary is in stdout when it is 0.
		wantCode    int
		wantSummary string
		// wantLines are the lines on which stderr must report a problem,
		// each with a word the message must contain.
		wantLines map[int]string
	}{
		{"good", goodPolicy, nil, 0, "2 inbound rules, 0 outbound rules, 3 listeners\n", nil},
		{"two-mistakes", brokenPolicy, nil, 1, "", map[int]string{4: "handshake_timeout", 13: "colour"}},
		{"warning-only", goodPolicy, func(t *testing.T, dir string) {
			if err := os.Chmod(filepath.Join(dir, "certs", "server-key.pem"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, 0, "3 listeners, 1 warning\n", map[int]string{3: "warning: Private key mode"}},
		{"port-in-use", strings.Replace(goodPolicy, "= 8443", "= "+heldPort, 1), nil, 0,
			"2 inbound rules", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			copyCerts(t, filepath.Join(dir, "certs"))
			if tt.prepare != nil {
				tt.prepare(t, dir)
			}
			file := filepath.Join(dir, "policy.hcl")
			writeFile(t, file, tt.policy)
			stdout, stderr, code := run(t, "", attlsdBin, "check", file)
			if code != tt.wantCode {
				t.Fatalf("attlsd check exit: got %d, want %d\nstdout: %s\nstderr: %s",
					code, tt.wantCode, stdout, stderr)
			}
			if tt.wantCode == 0 {
				want := file + ": ok: "
				if !strings.HasPrefix(stdout, want) || !strings.Contains(stdout, tt.wantSummary) {
					t.Errorf("stdout: got %q, want %q... with %q", stdout, want, tt.wantSummary)
				}
			}
			if len(tt.wantLines) == 0 {
				if stderr != "" {
					t.Errorf("stderr: got %q, want nothing", stderr)
				}
				return
			}
			checkDiagnostics(t, file, stderr, tt.wantLines)
		})
	}
}

// checkDiagnostics checks that stderr has exactly one file:line:col error
// for each wanted line, mentioning the wanted word.
func checkDiagnostics(t *testing.T, file, stderr string, want map[int]string) {
	t.Helper()
	re := regexp.MustCompile(`^` + regexp.QuoteMeta(file) + `:(\d+):(\d+): (.+)$`)
	got := map[int]string{}
	for _, l := range strings.Split(strings.TrimSpace(stderr), "\n") {
		m := re.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		var line, col int
		fmt.Sscan(m[1], &line)
		fmt.Sscan(m[2], &col)
		if col < 1 {
			t.Errorf("diagnostic %q: column %d, want 1 or more", l, col)
		}
		if _, dup := got[line]; dup {
			t.Errorf("line %d reported twice:\n%s", line, stderr)
		}
		got[line] = m[3]
	}
	if len(got) != len(want) {
		t.Errorf("file:line:col diagnostics: got %d, want %d\nstderr:\n%s", len(got), len(want), stderr)
	}
	for line, word := range want {
		msg, ok := got[line]
		if !ok || !strings.Contains(msg, word) {
			t.Errorf("diagnostic for line %d: got %q, want one that names %q\nstderr:\n%s",
				line, msg, word, stderr)
		}
	}
}

// goodPolicy uses paths relative to its own folder.
const goodPolicy = `environment "web" {
  certificate = "certs/server.pem"
  private_key = "certs/server-key.pem"
  trust       = ["certs/ca.pem"]
  alpn        = ["h2", "http/1.1"]
}

inbound "api" {
  port        = 8443
  address     = "127.0.0.1"
  environment = "web"
  backend     = "127.0.0.1:9080"
}

inbound "api-mtls" {
  port        = "8444-8445"
  address     = "127.0.0.1"
  environment = "web"
  client_auth = "required"
  backend     = "unix:/run/app.sock"
  proxy_protocol = "v1"
}
`

// brokenPolicy has a bad duration on line 4 and an unknown attribute on
// line 13.
const brokenPolicy = `environment "web" {
  certificate = "certs/server.pem"
  private_key = "certs/server-key.pem"
  handshake_timeout = "soon"
}

inbound "api" {
  port        = 8443
  address     = "127.0.0.1"
  environment = "web"
  backend     = "127.0.0.1:9080"

  colour      = "blue"
}
`

// copyCerts copies the development PKI into dir, keeping file modes.
func copyCerts(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"ca.pem", "server.pem", "server-key.pem", "client.pem", "client-key.pem"} {
		src := filepath.Join(certDir, name)
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, fi.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
	}
}

// TestCertsInit makes a development PKI with extra host names and checks
// the files, their modes, the server certificate's names and that both
// leaves chain to the CA. A second run into the same folder must fail and
// leave the files alone.
func TestCertsInit(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	stdout, stderr, code := run(t, "", attlsdBin, "certs", "init", dir,
		"--hosts", "app.example.test,192.0.2.7")
	if code != 0 {
		t.Fatalf("attlsd certs init: exit %d\n%s", code, stderr)
	}
	files := []struct {
		name string
		mode os.FileMode
	}{
		{"ca.pem", 0}, {"ca-key.pem", 0o600},
		{"server.pem", 0}, {"server-key.pem", 0o600},
		{"client.pem", 0}, {"client-key.pem", 0o600},
	}
	for _, f := range files {
		fi, err := os.Stat(filepath.Join(dir, f.name))
		switch {
		case err != nil:
			t.Errorf("%s: %v", f.name, err)
		case f.mode != 0 && fi.Mode().Perm() != f.mode:
			t.Errorf("%s mode: got %o, want %o", f.name, fi.Mode().Perm(), f.mode)
		case fi.Mode().Perm()&0o022 != 0:
			t.Errorf("%s mode: got %o, want no group or other write", f.name, fi.Mode().Perm())
		}
		if !strings.Contains(stdout, filepath.Join(dir, f.name)) {
			t.Errorf("stdout does not list %s:\n%s", f.name, stdout)
		}
	}

	ca, server, client := loadCert(t, filepath.Join(dir, "ca.pem")),
		loadCert(t, filepath.Join(dir, "server.pem")), loadCert(t, filepath.Join(dir, "client.pem"))
	var ips []string
	for _, ip := range server.IPAddresses {
		ips = append(ips, ip.String())
	}
	slices.Sort(ips)
	if want := []string{"127.0.0.1", "192.0.2.7", "::1"}; !slices.Equal(ips, want) {
		t.Errorf("server IP SANs: got %v, want %v", ips, want)
	}
	dns := slices.Sorted(slices.Values(server.DNSNames))
	if want := []string{"app.example.test", "localhost"}; !slices.Equal(dns, want) {
		t.Errorf("server DNS SANs: got %v, want %v", dns, want)
	}
	for _, c := range []*x509.Certificate{ca, server, client} {
		k, ok := c.PublicKey.(*ecdsa.PublicKey)
		if !ok || k.Curve != elliptic.P256() {
			t.Errorf("%s key: got %T, want ECDSA P-256", c.Subject.CommonName, c.PublicKey)
		}
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	if _, err := server.Verify(x509.VerifyOptions{Roots: roots, DNSName: "app.example.test"}); err != nil {
		t.Errorf("server certificate for app.example.test: %v", err)
	}
	if _, err := client.Verify(x509.VerifyOptions{Roots: roots,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("client certificate: %v", err)
	}

	before, _ := os.ReadFile(filepath.Join(dir, "ca-key.pem"))
	if _, _, code := run(t, "", attlsdBin, "certs", "init", dir); code == 0 {
		t.Errorf("second certs init into the same folder: got exit 0, want failure")
	}
	if after, _ := os.ReadFile(filepath.Join(dir, "ca-key.pem")); string(after) != string(before) {
		t.Errorf("second certs init changed ca-key.pem")
	}
}

// TestCertsInitBadHosts: --hosts entries that are neither an IP address
// nor a DNS name are refused, each named on its own line, and nothing is
// written.
func TestCertsInitBadHosts(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	stdout, stderr, code := run(t, "", attlsdBin, "certs", "init", dir,
		"--hosts", "bad name,1.2.3.999,app.example.test")
	if code != 2 || stdout != "" {
		t.Errorf("attlsd certs init: got exit %d, stdout %q; want 2 and nothing", code, stdout)
	}
	want := "attlsd: certs init: --hosts: host \"bad name\" is neither an IP address " +
		"nor a DNS name (letters, digits and hyphens in dot-separated labels, " +
		"optionally \"*.\" first)\n" +
		"attlsd: certs init: --hosts: host \"1.2.3.999\" is not a valid IPv4 address\n"
	if stderr != want {
		t.Errorf("stderr: got %q, want %q", stderr, want)
	}
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s: got %v, want it not made", dir, err)
	}
}

// TestVersion checks that attlsd version prints a version and exits 0.
func TestVersion(t *testing.T) {
	stdout, stderr, code := run(t, "", attlsdBin, "version")
	if code != 0 || !strings.HasPrefix(stdout, "attlsd ") || !strings.Contains(stdout, "go1.") {
		t.Errorf("attlsd version: got exit %d, stdout %q, stderr %q; want 0, \"attlsd VERSION (goX)\"",
			code, stdout, stderr)
	}
}

// TestStopSignals stops attlsd with SIGTERM and SIGINT: as soon as it
// says it has started, as a supervisor may, and with a client connection
// open. It must exit 0 each time, having closed the open connection. The
// first kind runs several daemons in turn, since a signal that arrives
// before attlsd handles signals kills it only some of the time.
func TestStopSignals(t *testing.T) {
	const rounds = 10
	tests := []struct {
		name     string
		sig      syscall.Signal
		openConn bool
	}{
		{"SIGTERM-right-after-start", syscall.SIGTERM, false},
		{"SIGINT-right-after-start", syscall.SIGINT, false},
		{"SIGTERM-with-open-connection", syscall.SIGTERM, true},
		{"SIGINT-with-open-connection", syscall.SIGINT, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := startBackend(t, echo)
			if !tt.openConn {
				for i := 0; i < rounds && !t.Failed(); i++ {
					simpleDaemon(t, b.addr, nil, nil).stopWith(t, tt.sig)
				}
				return
			}
			d := simpleDaemon(t, b.addr, nil, nil)
			c := dialTLS(t, d.addr("127.0.0.1", 0), clientTLS(t))
			c.Write([]byte("ping"))
			if _, err := io.ReadFull(c, make([]byte, 4)); err != nil {
				t.Fatalf("echo through attlsd: %v", err)
			}
			start := time.Now()
			d.stopWith(t, tt.sig)
			if took := time.Since(start); took > 5*time.Second {
				t.Errorf("stop took %s, want well under 5s", took)
			}
			if _, err := c.Read(make([]byte, 1)); !errIsClosed(err) {
				t.Errorf("open connection after stop: read got %v, want it closed", err)
			}
			d.closeLineAfterExit(t, c.LocalAddr().String())
		})
	}
}

// ansiEscape matches the colour codes of zerolog's console writer.
var ansiEscape = regexp.MustCompile("\x1b\\[[0-9;]*m")

// TestConsoleLog runs attlsd once with --log-format console: the start
// line and a connection's close line come out in zerolog's human form,
// one line each and not JSON, with the same fields as the JSON log.
func TestConsoleLog(t *testing.T) {
	needTool(t, "curl", "curl")
	b := startBackend(t, answerHTTP("ok\n"))
	file := filepath.Join(t.TempDir(), "policy.hcl")
	p, addr := startListening(t, attlsdBin, func(port int) []string {
		writeFile(t, file, environment()+inbound("e2e", port, b.addr))
		return []string{"run", "--policy", file, "--log-format", "console", "--drain-timeout", "1s"}
	})
	url, resolve := httpsURL(addr)
	res := curl(t, url, resolve...)
	if res.code != 0 || res.body != "ok\n" {
		t.Fatalf("curl: got exit %d, body %q; want 0, %q\n%s", res.code, res.body, "ok\n", res.stderr)
	}

	tests := []struct {
		name, find string
		want       []string
	}{
		{"start-line", "attlsd started", []string{"INF", "attlsd started", addr}},
		{"close-line", res.local, []string{"INF", "connection closed", "client=" + res.local,
			"rule=e2e", "backend=" + b.addr, "reason=closed", "tls_version=TLSv1.3"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			line, err := p.out.waitText(logTimeout, p.exited, tt.find)
			if err != nil {
				t.Fatalf("console log: %v\n%s", err, p.out.text())
			}
			plain := ansiEscape.ReplaceAllString(line, "")
			if strings.HasPrefix(strings.TrimSpace(plain), "{") {
				t.Errorf("console line is JSON: %s", plain)
			}
			for _, w := range tt.want {
				if !strings.Contains(plain, w) {
					t.Errorf("console line: got %q, want it to hold %q", plain, w)
				}
			}
		})
	}
}

// TestSpecialFiles runs attlsd check and run on a policy that is a named
// pipe or a device, and check on one that names such files: each is
// refused at once with a message that says what the file is, where a
// plain read would block on the pipe or fill memory from the device.
func TestSpecialFiles(t *testing.T) {
	dir := t.TempDir()
	copyCerts(t, filepath.Join(dir, "certs"))
	fifo := filepath.Join(dir, "fifo.hcl")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	names := filepath.Join(dir, "names.hcl")
	writeFile(t, names, strings.NewReplacer("certs/server.pem", fifo,
		"certs/ca.pem", "/dev/zero").Replace(goodPolicy))

	tests := []struct {
		name string
		args []string
		want string // in stderr
	}{
		{"check-fifo", []string{"check", fifo}, fifo + `: Cannot read policy: "` + fifo +
			`" is a named pipe, not a regular file`},
		{"check-device", []string{"check", "/dev/zero"},
			`/dev/zero: Cannot read policy: "/dev/zero" is a character device`},
		{"check-names-them", []string{"check", names}, names + `:2:17: Cannot load certificate: ` +
			`read certificate: "` + fifo + `" is a named pipe`},
		{"show-device", []string{"show", "/dev/zero"}, `is a character device`},
		{"run-fifo", []string{"run", "--policy", fifo}, `is a named pipe, not a regular file`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, stderr, code := run(t, "", attlsdBin, tt.args...)
			if code != 1 || !strings.Contains(stderr, tt.want) {
				t.Errorf("attlsd %s: got exit %d, stderr %q; want 1 and %q",
					strings.Join(tt.args, " "), code, stderr, tt.want)
			}
		})
	}
}
