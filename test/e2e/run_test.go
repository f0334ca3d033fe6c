package e2e

import (
	"bufio"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestLogReaderGone runs attlsd with its stderr on a pipe whose reader
// goes away once attlsd has started, as with "attlsd run ... 2>&1 | head".
// Every log line written after that fails; attlsd must go on serving
// clients, and still drain and exit 0 on SIGTERM.
func TestLogReaderGone(t *testing.T) {
	b := startBackend(t, echo)
	port := freePorts(t, "127.0.0.1", 1)[0]
	file := filepath.Join(t.TempDir(), "policy.hcl")
	writeFile(t, file, environment()+inbound("e2e", port, b.addr))
	cmd := exec.Command(attlsdBin, "run", "--policy", file, "--drain-timeout", "5s")
	exited := startWithLogReader(t, cmd, "attlsd started")

	addr := "127.0.0.1:" + itoa(port)
	for i := range 5 {
		c := dialTLS(t, addr, clientTLS(t))
		roundTrip(t, c, "ping "+itoa(i))
		c.Close()
	}
	open := dialTLS(t, addr, clientTLS(t))
	roundTrip(t, open, "still here")

	cmd.Process.Signal(syscall.SIGTERM)
	roundTrip(t, open, "while draining")
	open.Close()
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("attlsd exit after SIGTERM: got %v, want status 0", err)
		}
	case <-time.After(stopTimeout):
		cmd.Process.Kill()
		t.Errorf("attlsd still running %s after SIGTERM; killed", stopTimeout)
	}
}

// startWithLogReader starts cmd with its stderr on a pipe, reads it until
// a line holds ready, then closes the pipe's read end. It returns a
// channel that gets Wait's result; the process is killed if the test
// ends first.
func startWithLogReader(t *testing.T, cmd *exec.Cmd, ready string) <-chan error {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Env, cmd.Stderr = binEnv(), w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill() })

	r.SetReadDeadline(time.Now().Add(startTimeout))
	sc := bufio.NewScanner(r)
	for sc.Scan() && !strings.Contains(sc.Text(), ready) {
	}
	r.Close()
	if sc.Err() != nil || !strings.Contains(sc.Text(), ready) {
		t.Fatalf("attlsd log: no line with %q (%v)", ready, sc.Err())
	}
	return exited
}

// TestAdminPortTaken gives --admin a port that cannot be bound: the
// port of the policy's own rule, or one another process holds. attlsd
// must refuse to start and blame the admin endpoint, not the rule.
func TestAdminPortTaken(t *testing.T) {
	holder, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	tests := []struct {
		name  string
		admin func(rulePort int) string
	}{
		{"rule-port", func(rulePort int) string { return itoa(rulePort) }},
		{"held-elsewhere", func(int) string { return holder.Addr().String() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			port := freePorts(t, "127.0.0.1", 1)[0]
			file := filepath.Join(t.TempDir(), "policy.hcl")
			writeFile(t, file, environment()+inbound("web", port, "127.0.0.1:1"))
			_, stderr, code := run(t, "", attlsdBin, "run", "--policy", file,
				"--admin", tt.admin(port))
			if code != 1 || !strings.Contains(stderr, "for the admin endpoint") ||
				strings.Contains(stderr, `for rule \"web\"`) {
				t.Errorf("attlsd run: got exit %d, stderr:\n%s\nwant 1, blaming the admin "+
					"endpoint and not rule \"web\"", code, stderr)
			}
		})
	}
}
