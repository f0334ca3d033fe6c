package e2e

import (
	"crypto/tls"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// resumeOpenSSL makes an HTTP request to addr with openssl s_client,
// offering the session saved in sess when there is one and saving the
// newest there. It returns whether the server resumed the session and
// the output.
func resumeOpenSSL(t *testing.T, addr, sess string) (bool, string) {
	t.Helper()
	openssl := needTool(t, "openssl", "openssl")
	args := []string{"s_client", "-connect", addr, "-servername", "localhost",
		"-CAfile", caFile(), "-verify_return_error", "-ign_eof", "-sess_out", sess}
	if _, err := os.Stat(sess); err == nil {
		args = append(args, "-sess_in", sess)
	}
	req := "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
	out, errOut, code := run(t, req, openssl, args...)
	if code != 0 {
		t.Fatalf("openssl s_client: exit %d\n%s\n%s", code, out, errOut)
	}
	switch {
	case strings.Contains(out, "\nReused, "):
		return true, out
	case strings.Contains(out, "\nNew, "):
		return false, out
	}
	t.Fatalf("openssl s_client: no New or Reused line in\n%s", out)
	return false, ""
}

// TestReloadSessionResumption: openssl s_client resumes its TLS session
// across a reload that changed only the rule's backend, and not across
// one that changed the environment's trust bundle or its certificate.
func TestReloadSessionResumption(t *testing.T) {
	a := startBackend(t, answerHTTP("A"))
	b := startBackend(t, answerHTTP("B"))
	pairDir, trust := t.TempDir(), filepath.Join(t.TempDir(), "trust.pem")
	writePlain(t, pairDir, issueServerPair(t).files())
	devCA, err := os.ReadFile(caFile())
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, trust, string(devCA))
	otherCA, err := os.ReadFile(filepath.Join(newPKI(t), "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	var port int
	policyFor := func(backend string) []byte {
		return []byte(pairEnvironment(pairDir, "trust = ["+quote(trust)+"]") +
			inbound("e2e", port, backend))
	}
	d := startWatched(t, 1, func(p []int) string {
		port = p[0]
		file := filepath.Join(t.TempDir(), "policy.hcl")
		writeFile(t, file, string(policyFor(a.addr)))
		return file
	})
	addr, sess := d.addr("127.0.0.1", 0), filepath.Join(t.TempDir(), "session.pem")

	tests := []struct {
		name   string
		change func(t *testing.T)
		resume bool
		body   string
	}{
		{"backend only", func(t *testing.T) { renameOver(t, d.policy, policyFor(b.addr)) },
			true, "B"},
		{"trust bundle", func(t *testing.T) {
			renameOver(t, trust, append(devCA, otherCA...))
		}, false, "B"},
		{"certificate", func(t *testing.T) {
			eachFile(renameOver)(t, pairDir, issueServerPair(t).files())
		}, false, "B"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resumeOpenSSL(t, addr, sess)
			if reused, out := resumeOpenSSL(t, addr, sess); !reused {
				t.Fatalf("before the reload: got a new session, want it resumed\n%s", out)
			}
			from := d.mark()
			tt.change(t)
			d.waitLine(t, from, "reload line", isReloaded)
			reused, out := resumeOpenSSL(t, addr, sess)
			if reused != tt.resume || !strings.Contains(out, tt.body) {
				t.Errorf("after the reload: got resumed %t, want %t, and body %q in\n%s",
					reused, tt.resume, tt.body, out)
			}
		})
	}
}

// clientCertTLS is clientTLS presenting the client certificate in dir.
func clientCertTLS(t *testing.T, dir string) *tls.Config {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, "client.pem"),
		filepath.Join(dir, "client-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := clientTLS(t)
	cfg.Certificates = []tls.Certificate{pair}
	return cfg
}

// TestReloadTrust rotates a trust bundle from the development CA to
// another: with client_auth = "required", a client certificate of the
// new CA is taken only after the reload and one of the old CA only
// before; an outbound rule then verifies servers against the new CA only,
// also for a server it had a session with.
func TestReloadTrust(t *testing.T) {
	t.Run("client-auth", testTrustClientAuth)
	t.Run("outbound", testTrustOutbound)
}

// trustFile writes the development CA to a file of its own and returns
// it, with a second PKI whose CA is to replace it.
func trustFile(t *testing.T) (file, next string) {
	t.Helper()
	file = filepath.Join(t.TempDir(), "trust.pem")
	ca, err := os.ReadFile(caFile())
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, file, string(ca))
	return file, newPKI(t)
}

// rotateTrust replaces file with the CA of pki and waits for the reload.
func rotateTrust(t *testing.T, d *daemon, file, pki string) {
	t.Helper()
	ca, err := os.ReadFile(filepath.Join(pki, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	from := d.mark()
	renameOver(t, file, ca)
	d.waitLine(t, from, "reload line", isReloaded)
}

func testTrustClientAuth(t *testing.T) {
	backend := startBackend(t, answerHTTP("A"))
	trust, next := trustFile(t)
	d := startDaemon(t, "127.0.0.1", 1, func(p []int) string {
		return environment("trust = ["+quote(trust)+"]") +
			inbound("e2e", p[0], backend.addr, `client_auth = "required"`)
	})
	addr := d.addr("127.0.0.1", 0)
	oldClient, newClient := clientCertTLS(t, certDir), clientCertTLS(t, next)

	check := func(when string, cfg *tls.Config, want bool) {
		t.Helper()
		_, err := probeOnce(cfg, addr)
		if got := err == nil; got != want {
			t.Errorf("%s: served %t (%v), want %t", when, got, err, want)
		}
	}
	check("old CA's client before the reload", oldClient, true)
	check("new CA's client before the reload", newClient, false)
	rotateTrust(t, d, trust, next)
	check("new CA's client after the reload", newClient, true)
	check("old CA's client after the reload", oldClient, false)
}

func testTrustOutbound(t *testing.T) {
	trust, next := trustFile(t)
	answer := func(name string) func(*tls.Conn) {
		return func(c *tls.Conn) {
			io.Copy(io.Discard, c)
			io.WriteString(c, name)
		}
	}
	oldServer := startTLSEndpoint(t, endpointTLS(t, certDir), answer("old"))
	newServer := startTLSEndpoint(t, endpointTLS(t, next), answer("new"))
	d := startDaemon(t, "127.0.0.1", 2, func(p []int) string {
		return block("environment", outEnv, trustAttr(trust)) +
			portMappedRule("to-old", p[0], oldServer, `server_name = "localhost"`) +
			portMappedRule("to-new", p[1], newServer, `server_name = "localhost"`)
	})
	toOld, toNew := d.addr("127.0.0.1", 0), d.addr("127.0.0.1", 1)

	check := func(when, addr, want string) {
		t.Helper()
		if got := ask(t, addr); got != want {
			t.Errorf("%s: got reply %q, want %q", when, got, want)
		}
	}
	check("old CA's server before the reload", toOld, "old")
	check("old CA's server again, resuming", toOld, "old")
	check("new CA's server before the reload", toNew, "")
	rotateTrust(t, d, trust, next)
	check("new CA's server after the reload", toNew, "new")
	check("old CA's server after the reload", toOld, "")
}

// ask sends a line through an outbound rule at addr, half-closes and
// returns the reply; attlsd closing without one gives "".
func ask(t *testing.T, addr string) string {
	t.Helper()
	c := dialTCP(t, addr)
	c.Write([]byte("hello\n"))
	c.CloseWrite()
	c.SetDeadline(time.Now().Add(ioTimeout))
	b, err := io.ReadAll(c)
	if err != nil && !isReset(err) {
		t.Fatalf("read through %s: %v", addr, err)
	}
	return string(b)
}

// isReset reports a connection reset, which ends a refused connection as
// well as a close does.
func isReset(err error) bool { return errors.Is(err, syscall.ECONNRESET) }
