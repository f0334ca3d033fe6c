// Package e2e drives the built attlsd binary end to end: real clients
// (curl, openssl s_client, Python's ssl module, Go's crypto/tls) on one
// side, real PROXY protocol readers (a Go backend, the demo backend,
// HAProxy, nginx) on the other, all over loopback sockets.
//
// A missing external tool skips its test, unless ATTLSD_E2E_STRICT=1
// (as in CI), where it fails the test instead.
package e2e

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// Built once by TestMain and shared by every test.
var (
	attlsdBin  string // the attlsd binary
	backendBin string // the demo backend (examples/backend)
	certDir    string // attlsd certs init output
)

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "attlsd-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)

	if err := setup(dir); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: setup:", err)
		return 1
	}
	return m.Run()
}

// setup builds the binaries into dir and makes the development PKI.
func setup(dir string) error {
	root, err := repoRoot()
	if err != nil {
		return err
	}
	attlsdBin = filepath.Join(dir, "attlsd")
	backendBin = filepath.Join(dir, "demo-backend")
	if err := goBuild(root, attlsdBin, "./cmd/attlsd"); err != nil {
		return err
	}
	if err := goBuild(root, backendBin, "./examples/backend"); err != nil {
		return err
	}

	certDir = filepath.Join(dir, "certs")
	out, err := exec.Command(attlsdBin, "certs", "init", certDir).CombinedOutput()
	if err != nil {
		return fmt.Errorf("attlsd certs init: %w\n%s", err, out)
	}
	return nil
}

// repoRoot walks up from the test's folder to the folder holding go.mod.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the test folder")
		}
		dir = parent
	}
}

// goBuild builds pkg (relative to root) into out. When the tests run
// under the race detector the binaries get it too, so a data race in
// the daemon under real traffic fails the test that caused it.
func goBuild(root, out, pkg string) error {
	args := []string{"build", "-o", out}
	if raceEnabled {
		args = append(args, "-race")
	}
	cmd := exec.Command(goTool(), append(args, pkg)...)
	cmd.Dir = root
	start := time.Now()
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
	}
	if testing.Verbose() {
		fmt.Fprintf(os.Stderr, "e2e: built %s in %s\n", pkg, time.Since(start).Round(time.Millisecond))
	}
	return nil
}

// goTool finds the go command: on PATH, else the usual install folder.
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return "/usr/local/go/bin/go"
}

// strict reports whether a missing tool fails the test instead of
// skipping it.
func strict() bool { return os.Getenv("ATTLSD_E2E_STRICT") == "1" }

// needTool returns the path of an external program, or skips the test
// (fails it under ATTLSD_E2E_STRICT=1) when it is not installed. pkg is
// the Debian package that provides it.
func needTool(t *testing.T, name, pkg string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	// Debian puts daemons in sbin, which a non-root PATH may lack.
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/local/sbin"} {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	missing(t, fmt.Sprintf("%s not installed; apt-get install %s", name, pkg))
	return ""
}

// missing skips the test because something it needs is not on this host,
// or fails it under ATTLSD_E2E_STRICT=1.
func missing(t *testing.T, msg string) {
	t.Helper()
	if strict() {
		t.Fatal(msg + " (ATTLSD_E2E_STRICT=1)")
	}
	t.Skip(msg)
}
