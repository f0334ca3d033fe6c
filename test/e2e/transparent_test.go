package e2e

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The intercept ports of the lab's two attlsd instances: one on the
// gateway, one beside the app.
const (
	gwIntercept  = "15001"
	appIntercept = "15002"
)

// gwRedirect is the gateway's netfilter: TCP from the app to port 8443,
// IPv4 and IPv6 alike, goes to attlsd's intercept port.
const gwRedirect = `table inet attlsd_e2e {
  chain prerouting {
    type nat hook prerouting priority -100; policy accept;
    iifname "a0" tcp dport 8443 redirect to :` + gwIntercept + `
  }
}
`

// gwRedirects are the two ways the gateway redirects the app's
// connections: an nftables redirect, and iptables and ip6tables REDIRECT.
var gwRedirects = []struct {
	name string
	load func(t *testing.T, lab *netnsLab)
}{
	{"nftables", func(t *testing.T, lab *netnsLab) { lab.nftables(t, lab.gw, gwRedirect) }},
	{"iptables", func(t *testing.T, lab *netnsLab) {
		lab.nftables(t, lab.gw, "") // nothing but what iptables adds
		rule := []string{"-t", "nat", "-A", "PREROUTING", "-i", "a0", "-p", "tcp",
			"--dport", "8443", "-j", "REDIRECT", "--to-ports", gwIntercept}
		lab.run(t, lab.gw, needTool(t, "iptables", "iptables"), rule...)
		lab.run(t, lab.gw, needTool(t, "ip6tables", "iptables"), rule...)
	}},
}

// TestTransparentOutbound runs attlsd on a gateway that redirects the
// app's cleartext connections to its intercept port, with nftables and
// with iptables. attlsd reads each connection's original destination,
// picks the rule by it in AT-TLS order (rule "a_wide4" also takes the
// destinations of "srv4", which comes first by priority though not by
// name), and originates TLS to that very address, verified against the
// certificate's IP SANs; the server echoes. Redirected destinations no
// rule takes, connections made to the intercept port itself, and a
// server whose certificate lacks the address are refused and logged.
func TestTransparentOutbound(t *testing.T) {
	for _, redirect := range gwRedirects {
		t.Run(redirect.name, func(t *testing.T) {
			lab := newNetnsLab(t)
			redirect.load(t, lab)
			testTransparentOutbound(t, lab)
		})
	}
}

func testTransparentOutbound(t *testing.T, lab *netnsLab) {
	d := lab.startAttlsd(t, lab.gw, lab.transparentEnv()+
		block("outbound", "srv4", `remote_ports = 8443`,
			`remote_addresses = ["203.0.113.0/26"]`, `environment = "lab"`,
			`priority = 100`, `connect_timeout = "3s"`)+
		block("outbound", "a_wide4", `remote_ports = "8000-9000"`,
			`remote_addresses = ["203.0.113.0/24"]`, `environment = "lab"`,
			`priority = 50`, `connect_timeout = "3s"`)+
		block("outbound", "srv6", `remote_ports = "8443"`,
			`remote_addresses = ["2001:db8:2::/64"]`, `environment = "lab"`,
			`connect_timeout = "3s"`)+
		block("intercept", "gateway", "port = "+gwIntercept))

	tests := []struct {
		name   string
		dst    string // where the app connects
		direct bool   // dst is the intercept port itself: nothing redirects
		// For a relayed connection: the rule, and gw's address on the
		// server's side, which the server must see the connection from.
		wantRule, wantFrom string
		// For a refused one: the close line's level and reason, and
		// whether attlsd got as far as a handshake with the server.
		wantLevel, wantReason string
		wantHandshake         bool
	}{
		{name: "ipv4/higher-priority", dst: net.JoinHostPort(srvAddr4, "8443"),
			wantRule: "srv4", wantFrom: gwSrvAddr4},
		{name: "ipv4/lower-priority", dst: net.JoinHostPort(srvWideAddr4, "8443"),
			wantRule: "a_wide4", wantFrom: gwSrvAddr4},
		{name: "ipv6", dst: net.JoinHostPort(srvAddr6, "8443"),
			wantRule: "srv6", wantFrom: gwSrvAddr6},
		{name: "no-rule-ipv4", dst: "192.0.2.66:8443", wantLevel: "warn",
			wantReason: "no outbound rule takes destination 192.0.2.66:8443"},
		{name: "no-rule-ipv6", dst: "[2001:db8:3::1]:8443", wantLevel: "warn",
			wantReason: "no outbound rule takes destination [2001:db8:3::1]:8443"},
		{name: "not-redirected-ipv4", dst: net.JoinHostPort(gwAppAddr4, gwIntercept),
			direct: true, wantLevel: "warn", wantReason: "connection was not redirected"},
		{name: "not-redirected-ipv6", dst: net.JoinHostPort(gwAppAddr6, gwIntercept),
			direct: true, wantLevel: "warn", wantReason: "connection was not redirected"},
		{name: "address-not-in-certificate", dst: net.JoinHostPort(srvBadAddr4, "8443"),
			wantLevel: "error", wantHandshake: true,
			wantReason: `server certificate of 203.0.113.3:8443 is not valid for "203.0.113.3"`},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			payload := pattern(256<<10, byte(i))
			echoes := lab.echoCount()
			c := lab.dial(t, lab.app, tt.dst, payload)
			line := d.closeLine(t, c.local)
			// The original destination is where TLS goes, or would have.
			if !tt.direct && line.str("endpoint") != tt.dst {
				t.Errorf("close line endpoint: got %q, want %q", line.str("endpoint"), tt.dst)
			}

			if tt.wantRule == "" {
				checkLabRefused(t, line, c, tt.wantLevel, tt.wantReason)
				if !tt.wantHandshake {
					if n := lab.echoCount() - echoes; n != 0 {
						t.Errorf("echo server connections: got %d, want 0", n)
					}
					return
				}
				e := lab.echoed(t, tt.dst, echoes)
				if !strings.HasPrefix(e.str("error"), "handshake") {
					t.Errorf("echo server: got %s, want a failed handshake", e)
				}
				return
			}
			if c.err != "" || !bytes.Equal(c.got, payload) {
				t.Fatalf("echo through attlsd: got %d bytes (error %q), want the %d sent",
					len(c.got), c.err, len(payload))
			}
			host, _, _ := net.SplitHostPort(tt.dst)
			checkCloseLine(t, line, map[string]string{"level": "info", "rule": tt.wantRule,
				"remote": tt.dst, "sni": host,
				"tls_version": "TLSv1.3", "reason": "closed", "direction": "outbound"})
			checkLabBytes(t, line, len(payload))
			checkLabEchoed(t, lab.echoed(t, tt.dst, echoes), tt.wantFrom, len(payload))
		})
	}
}

// TestTransparentRedirectLoop runs attlsd beside the app, which is the
// usual transparent setup: an OUTPUT-chain redirect of the app's own
// connections. Without an exception for attlsd's traffic, attlsd's
// connection to the server is redirected back to attlsd; that loop is
// detected and refused, and the daemon goes on. With attlsd's group
// excluded (attlsd runs under gid 4242 via setpriv, nftables matches
// meta skgid) the same redirect works.
func TestTransparentRedirectLoop(t *testing.T) {
	lab := newNetnsLab(t)
	setpriv := needTool(t, "setpriv", "util-linux")
	d := lab.startAttlsd(t, lab.app, lab.transparentEnv()+
		block("outbound", "srv-direct", `remote_ports = 9443`,
			`remote_addresses = ["203.0.113.0/24", "2001:db8:2::/64"]`,
			`environment = "lab"`, `connect_timeout = "3s"`)+
		block("intercept", "local", "port = "+appIntercept),
		setpriv, "--regid", attlsdGID, "--clear-groups")

	dsts := []struct{ name, dst, app string }{
		{"ipv4", net.JoinHostPort(srvAddr4, "9443"), appAddr4},
		{"ipv6", net.JoinHostPort(srvAddr6, "9443"), appAddr6},
	}
	t.Run("loop", func(t *testing.T) {
		lab.nftables(t, lab.app, appRedirect(false))
		for i, tt := range dsts {
			t.Run(tt.name, func(t *testing.T) {
				echoes := lab.echoCount()
				c := lab.dial(t, lab.app, tt.dst, pattern(1024, byte(i)))

				want := "redirect loop: attlsd's own connection to " + tt.dst
				loop, err := d.log.wait(logTimeout, d.exited, func(l logLine) bool {
					return l.str("message") == "connection closed" &&
						strings.HasPrefix(l.str("reason"), want)
				})
				if err != nil {
					t.Fatalf("no close line with reason %q...: %v\nattlsd log:\n%s",
						want, err, d.log.text())
				}
				if got := loop.str("level"); got != "warn" {
					t.Errorf("loop close line level: got %q, want warn\nline: %s", got, loop)
				}
				if host, _, _ := net.SplitHostPort(loop.str("client")); host != tt.app {
					t.Errorf("looped connection from %q: want attlsd's own, from %s",
						loop.str("client"), tt.app)
				}
				// The app's connection fails with the handshake attlsd
				// could not make; nothing reached the server.
				line := d.closeLine(t, c.local)
				checkLabRefused(t, line, c, "error", "handshake with "+tt.dst)
				if n := lab.echoCount() - echoes; n != 0 {
					t.Errorf("echo server connections: got %d, want 0", n)
				}
			})
		}
		select {
		case <-d.exited:
			t.Fatalf("attlsd exited after the loop: %v\n%s", d.err, d.log.text())
		default:
		}
	})
	t.Run("excluded", func(t *testing.T) {
		lab.nftables(t, lab.app, appRedirect(true))
		for i, tt := range dsts {
			t.Run(tt.name, func(t *testing.T) {
				payload := pattern(64<<10, byte(i))
				echoes := lab.echoCount()
				c := lab.dial(t, lab.app, tt.dst, payload)
				if c.err != "" || !bytes.Equal(c.got, payload) {
					t.Fatalf("echo through attlsd: got %d bytes (error %q), want the %d sent",
						len(c.got), c.err, len(payload))
				}
				line := d.closeLine(t, c.local)
				checkCloseLine(t, line, map[string]string{"level": "info",
					"rule": "srv-direct", "endpoint": tt.dst, "reason": "closed"})
				checkLabBytes(t, line, len(payload))
				// Routed through gw untouched: the server sees the app's host.
				checkLabEchoed(t, lab.echoed(t, tt.dst, echoes), tt.app, len(payload))
			})
		}
	})
}

// TestTransparentUnprivileged runs the transparent setup beside the app
// with attlsd as user nobody (group attlsdGID) and no capability at all:
// reading a connection's original destination (SO_ORIGINAL_DST, the
// conntrack entry) takes no privilege, and only loading the nftables
// rules, done here by root, takes CAP_NET_ADMIN.
func TestTransparentUnprivileged(t *testing.T) {
	lab := newNetnsLab(t)
	setpriv := needTool(t, "setpriv", "util-linux")
	dir := deployDir(t)
	bin := copyExecutable(t, attlsdBin, filepath.Join(dir, "bin"))
	ca := filepath.Join(dir, "ca.pem")
	writeFile(t, ca, string(readFileT(t, filepath.Join(lab.certs, "ca.pem"))))
	file := filepath.Join(dir, "policy.hcl")
	writeFile(t, file, block("environment", "lab", "trust = ["+quote(ca)+"]")+
		block("outbound", "srv-direct", `remote_ports = 9443`,
			`remote_addresses = ["203.0.113.0/24", "2001:db8:2::/64"]`,
			`environment = "lab"`, `connect_timeout = "3s"`)+
		block("intercept", "local", "port = "+appIntercept))
	lab.nftables(t, lab.app, appRedirect(true))

	d, err := launchCmd(exec.Command(lab.ip, "netns", "exec", lab.app, setpriv,
		"--reuid=65534", "--regid="+attlsdGID, "--clear-groups",
		bin, "run", "--policy", file, "--log-level", "debug"), file, nil)
	if err != nil {
		t.Fatalf("attlsd as nobody in %s: %v", lab.app, err)
	}
	t.Cleanup(func() { d.stop(t) })
	pid := d.cmd.Process.Pid
	if uid := strings.Fields(procStatus(t, pid, "Uid")); uid[1] != "65534" {
		t.Errorf("attlsd effective uid: got %s, want 65534", uid[1])
	}
	if eff := procStatus(t, pid, "CapEff"); eff != noCapabilities {
		t.Errorf("attlsd CapEff: got %s, want %s", eff, noCapabilities)
	}

	dsts := []string{net.JoinHostPort(srvAddr4, "9443"), net.JoinHostPort(srvAddr6, "9443")}
	for i, dst := range dsts {
		payload := pattern(16<<10, byte(i))
		c := lab.dial(t, lab.app, dst, payload)
		if c.err != "" || !bytes.Equal(c.got, payload) {
			t.Fatalf("echo to %s through attlsd: got %d bytes (error %q), want the %d sent",
				dst, len(c.got), c.err, len(payload))
		}
		checkCloseLine(t, d.closeLine(t, c.local), map[string]string{"level": "info",
			"rule": "srv-direct", "endpoint": dst, "reason": "closed"})
	}
}

// readFileT reads a file or fails the test.
func readFileT(t *testing.T, file string) []byte {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// attlsdGID is the group attlsd runs under beside the app, so that
// netfilter can tell its connections from the app's.
const attlsdGID = "4242"

// appRedirect is the app host's netfilter: its connections to port 9443
// go to attlsd's intercept port, attlsd's own too unless exclude.
func appRedirect(exclude bool) string {
	except := ""
	if exclude {
		except = "    meta skgid " + attlsdGID + " return\n"
	}
	return `table inet attlsd_e2e {
  chain output {
    type nat hook output priority -100; policy accept;
` + except + `    tcp dport 9443 redirect to :` + appIntercept + `
  }
}
`
}

// checkLabRefused checks that attlsd closed a client's connection without
// relaying anything, with a close line of level and a reason containing
// reason.
func checkLabRefused(t *testing.T, line logLine, c labClient, level, reason string) {
	t.Helper()
	if line.str("level") != level || !strings.Contains(line.str("reason"), reason) {
		t.Errorf("close line: got level %q, reason %q; want %s, %q\nline: %s",
			line.str("level"), line.str("reason"), level, reason, line)
	}
	if len(c.got) != 0 {
		t.Errorf("refused client got %d bytes back, want 0", len(c.got))
	}
	if line.num("bytes_in") != 0 || line.num("bytes_out") != 0 {
		t.Errorf("refused connection: got bytes_in %v, bytes_out %v, want 0 and 0",
			line.num("bytes_in"), line.num("bytes_out"))
	}
}

// checkLabBytes checks that a close line counts n bytes each way.
func checkLabBytes(t *testing.T, line logLine, n int) {
	t.Helper()
	if line.num("bytes_in") != float64(n) || line.num("bytes_out") != float64(n) {
		t.Errorf("close line: got bytes_in %v, bytes_out %v, want %d each",
			line.num("bytes_in"), line.num("bytes_out"), n)
	}
}

// checkLabEchoed checks the echo server's line for a relayed connection: it
// came from host over TLS 1.3 and echoed n bytes.
func checkLabEchoed(t *testing.T, e logLine, host string, n int) {
	t.Helper()
	from, _, _ := net.SplitHostPort(e.str("remote"))
	if from != host || e.str("tls_version") != "TLS 1.3" ||
		e.num("bytes") != float64(n) || e.str("error") != "" {
		t.Errorf("echo server: got %s; want from %s, TLS 1.3, %d bytes, no error", e, host, n)
	}
}

// TestInterceptWithoutConntrack connects straight to an intercept port
// in a namespace where netfilter tracks no connection (no rule loaded),
// so that SO_ORIGINAL_DST finds no entry. The app's connection ends in
// order, and the close line says in plain words that netfilter did not
// redirect it and what to check, not the bare ENOENT of getsockopt.
func TestInterceptWithoutConntrack(t *testing.T) {
	ns := newNetns(t)
	d := startDaemonUnder(t, ns.runner(attlsdBin), "127.0.0.1", 1, func(p []int) string {
		return block("environment", "lab", "trust = ["+quote(caFile())+"]") +
			block("outbound", "any", `remote_ports = "1-65535"`,
				`remote_addresses = ["0.0.0.0/0"]`, `environment = "lab"`) +
			block("intercept", "here", "port = "+itoa(p[0]), `address = "127.0.0.1"`)
	}, nil)
	c, err := ns.dial(t.Context(), "tcp", d.addr("127.0.0.1", 0))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
	c.SetReadDeadline(time.Now().Add(ioTimeout))
	if end := ending(c); end != "eof" {
		t.Errorf("app saw its connection end by %s, want eof", end)
	}
	line := d.closeLine(t, c.LocalAddr().String())
	const want = "connection was not redirected by netfilter"
	r := line.str("reason")
	if !strings.HasPrefix(r, want) || strings.Contains(r, "no such file") {
		t.Errorf("close line reason: got %q, want %q... in plain words", r, want)
	}
	if line.str("level") != "warn" {
		t.Errorf("close line level: got %q, want warn", line.str("level"))
	}
}
