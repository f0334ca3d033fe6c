package e2e

import (
	"bufio"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
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

// TestSubcommandHelp: -h and --help print each subcommand's usage with
// its flags on stdout and exit 0, wherever they stand on the line.
func TestSubcommandHelp(t *testing.T) {
	tests := []struct {
		args     []string
		synopsis string
		flags    []string
	}{
		{[]string{"run", "-h"}, "usage: attlsd run", []string{"--policy", "--admin",
			"--drain-timeout", "--watch", "--log-format", "--log-level"}},
		{[]string{"run", "--policy", "p.hcl", "--help"}, "usage: attlsd run", nil},
		{[]string{"check", "--help"}, "usage: attlsd check FILE", nil},
		{[]string{"check", "p.hcl", "-h"}, "usage: attlsd check FILE", nil},
		{[]string{"show", "--help"}, "usage: attlsd show", []string{"--json"}},
		{[]string{"show", "p.hcl", "--help"}, "usage: attlsd show", []string{"--json"}},
		{[]string{"certs", "--help"}, "usage: attlsd certs init", []string{"--hosts"}},
		{[]string{"certs", "init", "-h"}, "usage: attlsd certs init", []string{"--hosts"}},
		{[]string{"version", "--help"}, "usage: attlsd version", nil},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			stdout, stderr, code := run(t, "", attlsdBin, tt.args...)
			if code != 0 || !strings.HasPrefix(stdout, tt.synopsis) || stderr != "" {
				t.Errorf("got exit %d, stdout %q, stderr %q; want 0, %q..., nothing",
					code, stdout, stderr, tt.synopsis)
			}
			for _, f := range tt.flags {
				if !strings.Contains(stdout, "\n  "+f+" ") &&
					!strings.Contains(stdout, "\n  "+f+"\n") {
					t.Errorf("usage: no line for %s in\n%s", f, stdout)
				}
			}
		})
	}
	t.Run("log levels", func(t *testing.T) {
		stdout, _, _ := run(t, "", attlsdBin, "run", "--help")
		if !strings.Contains(stdout, "trace, debug, info, warn or error") {
			t.Errorf("run usage: got\n%s\nwant it to list trace, debug, info, warn or error", stdout)
		}
	})
}

// TestShowFlagAfterFile: "show FILE --json" prints what "show --json
// FILE" does.
func TestShowFlagAfterFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "policy.hcl")
	port := freePorts(t, "127.0.0.1", 1)[0]
	writeFile(t, file, environment()+inbound("web", port, "127.0.0.1:9000"))
	want, stderr, code := run(t, "", attlsdBin, "show", "--json", file)
	if code != 0 || !strings.HasPrefix(want, "{") {
		t.Fatalf("show --json FILE: got exit %d, stdout %q, stderr %q; want 0 and JSON",
			code, want, stderr)
	}
	got, stderr, code := run(t, "", attlsdBin, "show", file, "--json")
	if code != 0 || got != want {
		t.Errorf("show FILE --json: got exit %d, stdout %q, stderr %q; want 0 and\n%s",
			code, got, stderr, want)
	}
}

// TestRunRefusesBadValues: attlsd run refuses flag values it would
// otherwise take in silence, naming the flag and what it takes.
func TestRunRefusesBadValues(t *testing.T) {
	file := filepath.Join(t.TempDir(), "policy.hcl")
	port := freePorts(t, "127.0.0.1", 1)[0]
	writeFile(t, file, environment()+inbound("web", port, "127.0.0.1:9000"))
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"negative drain timeout", []string{"--drain-timeout", "-5s"},
			"--drain-timeout -5s is negative"},
		{"unknown log level", []string{"--log-level", "fatal"},
			`unknown --log-level "fatal" (trace, debug, info, warn or error)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"run", "--policy", file}, tt.args...)
			_, stderr, code := run(t, "", attlsdBin, args...)
			if code != 2 || !strings.Contains(stderr, tt.want) {
				t.Errorf("got exit %d, stderr %q; want 2 and %q", code, stderr, tt.want)
			}
		})
	}
}

// TestConsoleLogColour runs attlsd with --log-format console, its stderr
// on a file and on a terminal: colour codes go to the terminal only.
func TestConsoleLogColour(t *testing.T) {
	tests := []struct {
		name   string
		stderr func(t *testing.T) (w *os.File, read func() string)
		colour bool
	}{
		{"file", logFile, false},
		{"terminal", logTerminal, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			port := freePorts(t, "127.0.0.1", 1)[0]
			file := filepath.Join(t.TempDir(), "policy.hcl")
			writeFile(t, file, environment()+inbound("web", port, "127.0.0.1:9000"))
			w, read := tt.stderr(t)
			cmd := exec.Command(attlsdBin, "run", "--policy", file, "--log-format", "console")
			cmd.Env, cmd.Stderr = binEnv(), w
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			w.Close()
			defer cmd.Wait()
			defer cmd.Process.Kill()
			text := waitFor(t, read, "attlsd started")
			if got := ansiEscape.MatchString(text); got != tt.colour {
				t.Errorf("colour codes in the console log: got %t, want %t\n%q", got, tt.colour, text)
			}
		})
	}
}

// logFile is a stderr for attlsd: a file, and how to read it so far.
func logFile(t *testing.T) (*os.File, func() string) {
	t.Helper()
	name := filepath.Join(t.TempDir(), "log")
	f, err := os.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	return f, func() string {
		b, _ := os.ReadFile(name)
		return string(b)
	}
}

// logTerminal is a stderr for attlsd: a pseudo-terminal, whose other
// end the test reads.
func logTerminal(t *testing.T) (*os.File, func() string) {
	t.Helper()
	ptm, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		missing(t, "no pseudo-terminal: "+err.Error())
	}
	t.Cleanup(func() { ptm.Close() })
	fd := int(ptm.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlock pseudo-terminal: %v", err)
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("pseudo-terminal number: %v", err)
	}
	pts, err := os.OpenFile("/dev/pts/"+itoa(n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var out strings.Builder
	go func() {
		buf := make([]byte, 4096)
		for {
			k, err := ptm.Read(buf)
			mu.Lock()
			out.Write(buf[:k])
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	return pts, func() string {
		mu.Lock()
		defer mu.Unlock()
		return out.String()
	}
}

// waitFor polls read until what it returns holds substr, and returns it.
func waitFor(t *testing.T, read func() string, substr string) string {
	t.Helper()
	deadline := time.Now().Add(startTimeout)
	for {
		text := read()
		if strings.Contains(text, substr) {
			return text
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q within %s; got\n%s", substr, startTimeout, text)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
