package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// caFile is the development CA that signed the server and client
// certificates.
func caFile() string { return filepath.Join(certDir, "ca.pem") }

// run runs a command with stdin, bounded by ioTimeout, and returns its
// stdout, stderr and exit code (-1 when it could not run or was killed).
func run(t *testing.T, stdin string, name string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = binEnv()
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("%s did not finish within %s\nstderr: %s", name, ioTimeout, errb.String())
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		t.Fatalf("run %s: %v", name, err)
	}
	return out.String(), errb.String(), code
}

// curlResult is what one curl run did.
type curlResult struct {
	body   string
	local  string // curl's own address, host:port as attlsd logs it
	code   int    // curl's exit status
	stderr string
}

// curl fetches url with the development CA and extra arguments, and
// reports curl's local address so tests can find the matching log line
// and compare it with what a backend decoded.
func curl(t *testing.T, url string, args ...string) curlResult {
	t.Helper()
	bin := needTool(t, "curl", "curl")
	body := filepath.Join(t.TempDir(), "body")
	base := []string{"-sS", "--max-time", "10", "--connect-timeout", "5",
		"--cacert", caFile(), "-o", body, "-w", "%{local_ip} %{local_port}"}
	stdout, stderr, code := run(t, "", bin, append(append(base, args...), url)...)
	res := curlResult{code: code, stderr: stderr}
	if ip, port, ok := strings.Cut(strings.TrimSpace(stdout), " "); ok && ip != "" {
		res.local = net.JoinHostPort(ip, port)
	}
	if b, err := os.ReadFile(body); err == nil {
		res.body = string(b)
	}
	return res
}

// httpsURL is https://localhost:PORT/ with curl told to reach localhost at
// addr, so curl sends SNI "localhost" whatever the address family.
func httpsURL(addr string) (url string, resolve []string) {
	host, port, _ := net.SplitHostPort(addr)
	return "https://localhost:" + port + "/", []string{"--resolve", "localhost:" + port + ":" + host}
}

// clientTLS is a Go client configuration that trusts the development CA
// and asks for "localhost".
func clientTLS(t *testing.T) *tls.Config {
	t.Helper()
	pem, err := os.ReadFile(caFile())
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatal("no certificate in ca.pem")
	}
	return &tls.Config{RootCAs: pool, ServerName: "localhost", NextProtos: []string{"http/1.1"}}
}

// dialTLS connects to addr with cfg and completes the handshake. The
// connection is closed when the test ends.
func dialTLS(t *testing.T, addr string, cfg *tls.Config) *tls.Conn {
	t.Helper()
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		t.Fatalf("TLS dial %s: %v", addr, err)
	}
	c.SetDeadline(time.Now().Add(ioTimeout))
	t.Cleanup(func() { c.Close() })
	return c
}

// dialTCP connects to addr without TLS. The connection is closed when the
// test ends.
func dialTCP(t *testing.T, addr string) *net.TCPConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	c.SetDeadline(time.Now().Add(ioTimeout))
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}
