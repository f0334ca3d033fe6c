package e2e

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The transparent tests build a small network of their own: three
// network namespaces joined by veth pairs, every address taken from the
// documentation ranges (RFC 5737, RFC 3849), so nothing leaves the host.
//
//	app  eth0 198.51.100.2  2001:db8:1::2  default via gw
//	gw   a0   198.51.100.1  2001:db8:1::1  forwards between app and srv
//	gw   s0   203.0.113.1   2001:db8:2::1
//	srv  eth0 203.0.113.2   2001:db8:2::2  TLS echo server, certificate for both
//	srv  eth0 203.0.113.3                  the same server, not in its certificate
//	srv  eth0 203.0.113.66                 the same server, in its certificate
//
// The server's certificate also holds labHostName. attlsd runs in gw, as
// a gateway that redirects in PREROUTING, or in app, beside the app,
// redirecting in OUTPUT.
const (
	appAddr4     = "198.51.100.2"
	appAddr6     = "2001:db8:1::2"
	gwAppAddr4   = "198.51.100.1"
	gwAppAddr6   = "2001:db8:1::1"
	gwSrvAddr4   = "203.0.113.1"
	gwSrvAddr6   = "2001:db8:2::1"
	srvAddr4     = "203.0.113.2"
	srvAddr6     = "2001:db8:2::2"
	srvBadAddr4  = "203.0.113.3"
	srvWideAddr4 = "203.0.113.66"
	labHostName  = "srv.attlsd.test"
	labEchoPorts = "8443,9443"
)

// netnsHelperEnv makes the test binary, run inside a namespace, act as
// one of the lab's peers instead of running tests: "tls-echo" or "client".
const netnsHelperEnv = "ATTLSD_E2E_NETNS_HELPER"

// The helper runs before TestMain, so it builds nothing.
func init() {
	if mode := os.Getenv(netnsHelperEnv); mode != "" {
		os.Exit(netnsHelper(mode, os.Args[1:]))
	}
}

// netnsHelper runs one helper mode and returns its exit status.
func netnsHelper(mode string, args []string) int {
	var err error
	switch mode {
	case "tls-echo":
		err = tlsEcho(args)
	case "client":
		err = echoClient(args)
	default:
		err = fmt.Errorf("unknown helper %q", mode)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "{\"message\":\"helper failed\",\"error\":%q}\n", err.Error())
		return 1
	}
	return 0
}

// tlsEcho serves TLS on every port of the comma-separated list in args[2]
// with the certificate args[0] and key args[1], on all addresses, and
// echoes what each client sends until it half-closes. It writes one JSON
// line on stdout once listening and one per connection.
func tlsEcho(args []string) error {
	if len(args) != 3 {
		return errors.New("usage: tls-echo CERT KEY PORT,...")
	}
	pair, err := tls.LoadX509KeyPair(args[0], args[1])
	if err != nil {
		return err
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{pair}}
	var mu sync.Mutex
	enc := json.NewEncoder(os.Stdout)
	emit := func(v map[string]any) {
		mu.Lock()
		defer mu.Unlock()
		enc.Encode(v)
	}
	for _, port := range strings.Split(args[2], ",") {
		ln, err := net.Listen("tcp", ":"+port)
		if err != nil {
			return err
		}
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go echoTLS(tls.Server(c, cfg), emit)
			}
		}()
	}
	emit(map[string]any{"message": "echo server ready"})
	select {}
}

// echoTLS echoes one connection and reports it.
func echoTLS(tc *tls.Conn, emit func(map[string]any)) {
	defer tc.Close()
	tc.SetDeadline(time.Now().Add(ioTimeout))
	line := map[string]any{"message": "echoed",
		"local": tc.LocalAddr().String(), "remote": tc.RemoteAddr().String()}
	if err := tc.Handshake(); err != nil {
		line["error"] = "handshake: " + err.Error()
		emit(line)
		return
	}
	n, err := io.Copy(tc, tc)
	if err == nil {
		err = tc.CloseWrite() // close_notify: the end of the echo
	}
	line["bytes"] = n
	line["tls_version"] = tls.VersionName(tc.ConnectionState().Version)
	if err != nil {
		line["error"] = err.Error()
	}
	emit(line)
}

// echoClient connects to args[0] in cleartext, sends its standard input
// and half-closes, and copies what comes back to standard output until
// the server closes. It first writes its own address on stderr as JSON.
func echoClient(args []string) error {
	if len(args) != 1 {
		return errors.New("usage: client HOST:PORT")
	}
	c, err := net.DialTimeout("tcp", args[0], 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	fmt.Fprintf(os.Stderr, "{\"message\":\"connected\",\"local\":%q}\n", c.LocalAddr())
	c.SetDeadline(time.Now().Add(ioTimeout - 5*time.Second))
	go func() {
		io.Copy(c, os.Stdin)
		c.(*net.TCPConn).CloseWrite()
	}()
	_, err = io.Copy(os.Stdout, c)
	return err
}

// netnsLab is the three namespaces of one test and the tools that run
// things in them.
type netnsLab struct {
	ip, nft      string // tool paths
	app, gw, srv string // namespace names
	certs        string // attlsd certs init output for the server's addresses
	helper       string // this test binary
	echo         *proc  // the TLS echo server in srv
}

var netnsSeq atomic.Int32

// newNetnsLab builds the namespaces, links, routes and the TLS echo
// server, and removes it all when the test ends. It skips the test when
// not root or when the kernel refuses namespaces or NAT; under
// ATTLSD_E2E_STRICT=1 it fails it instead.
func newNetnsLab(t *testing.T) *netnsLab {
	t.Helper()
	const why = "transparent outbound test needs root and iproute2+nftables: "
	if os.Geteuid() != 0 {
		missing(t, fmt.Sprintf(why+"running as uid %d", os.Geteuid()))
	}
	lab := &netnsLab{
		ip:  needTool(t, "ip", "iproute2"),
		nft: needTool(t, "nft", "nftables"),
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	lab.helper = exe

	prefix := fmt.Sprintf("attlsd-%d-%d-", os.Getpid(), netnsSeq.Add(1))
	lab.app, lab.gw, lab.srv = prefix+"app", prefix+"gw", prefix+"srv"
	for _, ns := range []string{lab.app, lab.gw, lab.srv} {
		if out, err := exec.Command(lab.ip, "netns", "add", ns).CombinedOutput(); err != nil {
			missing(t, fmt.Sprintf(why+"cannot create a network namespace: %v: %s",
				err, bytes.TrimSpace(out)))
		}
		t.Cleanup(func() { exec.Command(lab.ip, "netns", "del", ns).Run() })
		// Addresses are usable at once: no duplicate address detection.
		lab.sh(t, ns, "echo 0 > /proc/sys/net/ipv6/conf/all/accept_dad && "+
			"echo 0 > /proc/sys/net/ipv6/conf/default/accept_dad")
	}
	if err := lab.loadNft(lab.gw, "table inet attlsd_probe {\n"+
		"  chain prerouting {\n    type nat hook prerouting priority -100;\n"+
		"    tcp dport 1 redirect to :2\n  }\n}\n"); err != nil {
		missing(t, why+"netfilter NAT unavailable: "+err.Error())
	}

	lab.wire(t)
	lab.certs = filepath.Join(t.TempDir(), "certs")
	out, err := exec.Command(attlsdBin, "certs", "init", lab.certs,
		"--hosts", strings.Join([]string{srvAddr4, srvAddr6, srvWideAddr4, labHostName}, ",")).
		CombinedOutput()
	if err != nil {
		t.Fatalf("attlsd certs init: %v\n%s", err, out)
	}
	lab.startEcho(t)
	return lab
}

// wire joins the namespaces, addresses them and sets the routes.
func (lab *netnsLab) wire(t *testing.T) {
	t.Helper()
	steps := [][]string{
		{"-n", lab.app, "link", "add", "eth0", "type", "veth",
			"peer", "name", "a0", "netns", lab.gw},
		{"-n", lab.srv, "link", "add", "eth0", "type", "veth",
			"peer", "name", "s0", "netns", lab.gw},
		{"-n", lab.app, "addr", "add", appAddr4 + "/24", "dev", "eth0"},
		{"-n", lab.app, "addr", "add", appAddr6 + "/64", "dev", "eth0", "nodad"},
		{"-n", lab.gw, "addr", "add", gwAppAddr4 + "/24", "dev", "a0"},
		{"-n", lab.gw, "addr", "add", gwAppAddr6 + "/64", "dev", "a0", "nodad"},
		{"-n", lab.gw, "addr", "add", gwSrvAddr4 + "/24", "dev", "s0"},
		{"-n", lab.gw, "addr", "add", gwSrvAddr6 + "/64", "dev", "s0", "nodad"},
		{"-n", lab.srv, "addr", "add", srvAddr4 + "/24", "dev", "eth0"},
		{"-n", lab.srv, "addr", "add", srvBadAddr4 + "/24", "dev", "eth0"},
		{"-n", lab.srv, "addr", "add", srvWideAddr4 + "/24", "dev", "eth0"},
		{"-n", lab.srv, "addr", "add", srvAddr6 + "/64", "dev", "eth0", "nodad"},
	}
	for _, ns := range []string{lab.app, lab.gw, lab.srv} {
		steps = append(steps, []string{"-n", ns, "link", "set", "lo", "up"})
	}
	steps = append(steps,
		[]string{"-n", lab.app, "link", "set", "eth0", "up"},
		[]string{"-n", lab.gw, "link", "set", "a0", "up"},
		[]string{"-n", lab.gw, "link", "set", "s0", "up"},
		[]string{"-n", lab.srv, "link", "set", "eth0", "up"},
		[]string{"-n", lab.app, "route", "add", "default", "via", gwAppAddr4},
		[]string{"-6", "-n", lab.app, "route", "add", "default", "via", gwAppAddr6},
		[]string{"-n", lab.srv, "route", "add", "default", "via", gwSrvAddr4},
		[]string{"-6", "-n", lab.srv, "route", "add", "default", "via", gwSrvAddr6},
	)
	for _, args := range steps {
		if out, err := exec.Command(lab.ip, args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
		}
	}
	// Only gw routes between app and srv.
	lab.sh(t, lab.gw, "echo 1 > /proc/sys/net/ipv4/ip_forward && "+
		"echo 1 > /proc/sys/net/ipv6/conf/all/forwarding")
}

// sh runs a shell command in namespace ns or fails the test.
func (lab *netnsLab) sh(t *testing.T, ns, script string) {
	t.Helper()
	out, err := exec.Command(lab.ip, "netns", "exec", ns, "sh", "-c", script).CombinedOutput()
	if err != nil {
		t.Fatalf("in %s: sh -c %q: %v: %s", ns, script, err, bytes.TrimSpace(out))
	}
}

// run runs a program in namespace ns or fails the test.
func (lab *netnsLab) run(t *testing.T, ns, name string, args ...string) {
	t.Helper()
	out, err := exec.Command(lab.ip, append([]string{"netns", "exec", ns, name}, args...)...).
		CombinedOutput()
	if err != nil {
		t.Fatalf("in %s: %s %s: %v: %s", ns, name, strings.Join(args, " "), err,
			bytes.TrimSpace(out))
	}
}

// loadNft replaces the whole ruleset of namespace ns with rules.
func (lab *netnsLab) loadNft(ns, rules string) error {
	cmd := exec.Command(lab.ip, "netns", "exec", ns, lab.nft, "-f", "-")
	cmd.Stdin = strings.NewReader("flush ruleset\n" + rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("nft -f: %w: %s\nrules:\n%s", err, bytes.TrimSpace(out), rules)
	}
	return nil
}

// nftables loads rules into namespace ns or fails the test.
func (lab *netnsLab) nftables(t *testing.T, ns, rules string) {
	t.Helper()
	if err := lab.loadNft(ns, rules); err != nil {
		t.Fatal(err)
	}
}

// dropped sums the packet counters of the nftables rules in srv whose
// text holds match.
func (lab *netnsLab) dropped(t *testing.T, match string) int {
	t.Helper()
	out, err := exec.Command(lab.ip, "netns", "exec", lab.srv, lab.nft, "list", "ruleset").
		CombinedOutput()
	if err != nil {
		t.Fatalf("nft list ruleset in %s: %v: %s", lab.srv, err, bytes.TrimSpace(out))
	}
	total := 0
	for _, line := range strings.Split(string(out), "\n") {
		_, counter, ok := strings.Cut(line, "counter packets ")
		if !ok || !strings.Contains(line, match) {
			continue
		}
		var n int
		fmt.Sscan(counter, &n)
		total += n
	}
	return total
}

// startEcho runs the TLS echo server in srv on labEchoPorts.
func (lab *netnsLab) startEcho(t *testing.T) {
	t.Helper()
	cmd := []string{"netns", "exec", lab.srv, "env", netnsHelperEnv + "=tls-echo",
		lab.helper, filepath.Join(lab.certs, "server.pem"),
		filepath.Join(lab.certs, "server-key.pem"), labEchoPorts}
	lab.echo = startProc(t, lab.ip, cmd...)
	if _, err := lab.echo.out.wait(startTimeout, lab.echo.exited,
		isMessage("echo server ready")); err != nil {
		t.Fatalf("TLS echo server in %s: %v\n%s", lab.srv, err, lab.echo.out.text())
	}
}

// echoed waits for the echo server's line about a connection to local
// (host:port) among those after the first seen, and returns it.
func (lab *netnsLab) echoed(t *testing.T, local string, seen int) logLine {
	t.Helper()
	deadline := time.Now().Add(logTimeout)
	for {
		for _, l := range lab.echo.out.all(isMessage("echoed"))[seen:] {
			if l.str("local") == local {
				return l
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no echo server line for %s within %s\n%s",
				local, logTimeout, lab.echo.out.text())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// echoCount is how many connections the echo server has reported.
func (lab *netnsLab) echoCount() int {
	return len(lab.echo.out.all(isMessage("echoed")))
}

// startAttlsd runs attlsd on policy inside namespace ns, behind the
// wrapper command wrap (for example setpriv), and waits until it has
// started. It is stopped with SIGTERM when the test ends and must then
// exit cleanly, as with startDaemon.
func (lab *netnsLab) startAttlsd(t *testing.T, ns, policy string, wrap ...string) *daemon {
	t.Helper()
	file := filepath.Join(t.TempDir(), "policy.hcl")
	writeFile(t, file, policy)
	args := append([]string{"netns", "exec", ns}, wrap...)
	// ip netns exec and setpriv exec in place: the pid is attlsd's.
	args = append(args, attlsdBin, "run", "--policy", file, "--log-level", "debug")
	d, err := launchCmd(exec.Command(lab.ip, args...), file, nil)
	if err != nil {
		t.Fatalf("attlsd in %s: %v\npolicy:\n%s", ns, err, policy)
	}
	t.Cleanup(func() { d.stop(t) })
	return d
}

// labClient is what one cleartext client in a namespace saw.
type labClient struct {
	local string // its own address, host:port as attlsd logs it
	got   []byte // what came back
	err   string // why it failed, "" when the server closed cleanly
}

// dial runs a cleartext client in namespace ns that sends payload to
// addr, half-closes and reads until the far end closes.
func (lab *netnsLab) dial(t *testing.T, ns, addr string, payload []byte) labClient {
	t.Helper()
	stdout, stderr, code := run(t, string(payload), lab.ip, "netns", "exec", ns,
		"env", netnsHelperEnv+"=client", lab.helper, addr)
	res := labClient{got: []byte(stdout)}
	for _, s := range strings.Split(stderr, "\n") {
		var l logLine
		if json.Unmarshal([]byte(s), &l) != nil {
			continue
		}
		switch l.str("message") {
		case "connected":
			res.local = l.str("local")
		case "helper failed":
			res.err = l.str("error")
		}
	}
	if res.local == "" {
		t.Fatalf("client in %s to %s did not connect (exit %d): %s", ns, addr, code, stderr)
	}
	if code != 0 && res.err == "" {
		res.err = fmt.Sprintf("exit status %d", code)
	}
	return res
}

// transparentEnv is the environment of the lab's transparent rules: no
// client certificate, trust in the lab's CA only.
func (lab *netnsLab) transparentEnv() string {
	return block("environment", "lab",
		"trust = ["+quote(filepath.Join(lab.certs, "ca.pem"))+"]",
		`handshake_timeout = "5s"`)
}
