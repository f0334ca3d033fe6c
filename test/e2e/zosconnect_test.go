package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// zosTimeout bounds one run of the z/OS Connect harness: four processes
// started, one call, everything stopped.
const zosTimeout = 2 * time.Minute

// TestZosConnect runs examples/zosconnect/run.sh, the z/OS Connect
// topology with attlsd at both ends, on free ports, and checks what each
// stand-in saw:
//   - z/OS Connect got cleartext behind a PROXY v2 header that names the
//     CICS side attlsd (not CICS) as the client, TLS 1.3, SNI, ALPN, the
//     inbound rule and its connection id, agreeing with the z/OS side's
//     log; it learned that a client certificate was verified and got
//     nothing of it: no CN or certificate TLV, no DER, no CN in the bytes;
//   - the RESTful endpoint, doing its own TLS, saw the z/OS side's client
//     certificate, issued by the dev CA, and the ALPN protocol it offered;
//   - CICS got the answer, and both attlsd stopped cleanly.
func TestZosConnect(t *testing.T) {
	bash := needTool(t, "bash", "bash")
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	standins := filepath.Join(t.TempDir(), "zosconnect")
	if err := goBuild(root, standins, "./examples/zosconnect"); err != nil {
		t.Fatal(err)
	}

	run := runZosConnect(t, bash, root, standins)
	rep := run.report(t)
	t.Run("cics", func(t *testing.T) { checkZosCICS(t, run, rep) })
	t.Run("zosconnect", func(t *testing.T) { checkZosConnectSaw(t, run, rep) })
	t.Run("restful", func(t *testing.T) { checkZosRestfulSaw(t, run, rep) })
	t.Run("logs", func(t *testing.T) { checkZosLogs(t, run) })
	if t.Failed() {
		t.Logf("run.sh said:\n%s", run.out)
	}
}

// zosRun is one finished run of the harness.
type zosRun struct {
	ports map[string]int // by run.sh's variable name
	work  string         // WORK_DIR: policies, logs, report.json
	out   string         // run.sh's output
}

// zosPortNames are the ports run.sh takes from the environment.
var zosPortNames = []string{"CICS_PORT", "ZOS_PORT", "ZOSCONNECT_PORT",
	"API_PORT", "REST_PORT"}

// runZosConnect runs the harness on fresh ports with the binaries built
// for the tests, retrying when another process took a port in between.
func runZosConnect(t *testing.T, bash, root, standins string) *zosRun {
	t.Helper()
	for try := 1; ; try++ {
		r := &zosRun{ports: map[string]int{}, work: t.TempDir()}
		env := append(binEnv(), "ATTLSD="+attlsdBin, "STANDINS="+standins,
			"CERTS="+certDir, "WORK_DIR="+r.work)
		for i, p := range freePorts(t, "127.0.0.1", len(zosPortNames)) {
			r.ports[zosPortNames[i]] = p
			env = append(env, zosPortNames[i]+"="+itoa(p))
		}
		out, err := zosRunScript(bash, filepath.Join(root, "examples/zosconnect/run.sh"), env)
		r.out = out
		if err == nil {
			return r
		}
		if !strings.Contains(out, "address already in use") || try == bindRetries {
			t.Fatalf("run.sh: %v\n%s", err, out)
		}
	}
}

// zosRunScript runs a script in its own process group, so that a run that
// outlives zosTimeout is killed with everything it started.
func zosRunScript(bash, script string, env []string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), zosTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bash, script)
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = stopTimeout
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// zosReport is the part of the CICS stand-in's report.json that the test
// checks; the stand-ins' own types are in package main.
type zosReport struct {
	From   string `json:"from"`
	To     string `json:"to"`
	Status int    `json:"status"`
	Reply  struct {
		ZosConnect *struct {
			Peer         string   `json:"peer"`
			ProxyVersion int      `json:"proxy_version"`
			Client       string   `json:"client"`
			Destination  string   `json:"destination"`
			ConnID       string   `json:"conn_id"`
			Rule         string   `json:"rule"`
			SNI          string   `json:"sni"`
			ALPN         string   `json:"alpn"`
			TLS          bool     `json:"tls"`
			TLSVersion   string   `json:"tls_version"`
			Cipher       string   `json:"cipher"`
			CertVerified bool     `json:"client_cert_verified"`
			CertMaterial []string `json:"client_cert_material"`
			TLVs         []string `json:"tlvs"`
		} `json:"zosconnect"`
		Restful *struct {
			TLSVersion    string `json:"tls_version"`
			SNI           string `json:"sni"`
			ALPN          string `json:"alpn"`
			ClientSubject string `json:"client_subject"`
			ClientIssuer  string `json:"client_issuer"`
		} `json:"restful"`
		Account string `json:"account"`
		Balance string `json:"balance"`
	} `json:"reply"`
	Hops []struct {
		OK   bool   `json:"ok"`
		Line string `json:"line"`
	} `json:"hops"`
}

func (r *zosRun) report(t *testing.T) *zosReport {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(r.work, "report.json"))
	if err != nil {
		t.Fatalf("read the CICS report: %v\nrun.sh said:\n%s", err, r.out)
	}
	var rep zosReport
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatalf("decode the CICS report: %v\n%s", err, b)
	}
	if rep.Reply.ZosConnect == nil || rep.Reply.Restful == nil {
		t.Fatalf("report misses a stand-in's view:\n%s", b)
	}
	return &rep
}

// local is 127.0.0.1:port.
func (r *zosRun) local(name string) string { return "127.0.0.1:" + itoa(r.ports[name]) }

// checkZosCICS checks the four hops CICS printed and the answer it got.
func checkZosCICS(t *testing.T, r *zosRun, rep *zosReport) {
	if len(rep.Hops) != 4 {
		t.Fatalf("hops: got %d, want 4", len(rep.Hops))
	}
	for i, h := range rep.Hops {
		if !h.OK {
			t.Errorf("hop %d failed: %s", i+1, h.Line)
		}
		if !strings.Contains(r.out, "ok   "+itoa(i+1)+". ") {
			t.Errorf("run.sh output: no line for hop %d", i+1)
		}
	}
	if rep.To != r.local("CICS_PORT") {
		t.Errorf("CICS called %s, want %s", rep.To, r.local("CICS_PORT"))
	}
	if rep.Status != 200 || rep.Reply.Account != "0042" || rep.Reply.Balance != "1234.56" {
		t.Errorf("answer: got %d, account %q, balance %q; want 200, 0042, 1234.56",
			rep.Status, rep.Reply.Account, rep.Reply.Balance)
	}
}

// checkZosConnectSaw checks the PROXY header z/OS Connect got against the
// z/OS side attlsd's log, and that no client certificate material came.
func checkZosConnectSaw(t *testing.T, r *zosRun, rep *zosReport) {
	z := rep.Reply.ZosConnect
	line := r.closeLine(t, "zos-attlsd", "zosconnect")
	if z.ProxyVersion != 2 {
		t.Errorf("PROXY version: got %d, want 2", z.ProxyVersion)
	}
	// The client is the CICS side attlsd's socket, as the z/OS side saw it.
	if host, _, _ := net.SplitHostPort(z.Client); host != "127.0.0.1" ||
		z.Client == rep.From || z.Client != line.str("client") {
		t.Errorf("PROXY client: got %s, want the z/OS side's client %s (not CICS's %s)",
			z.Client, line.str("client"), rep.From)
	}
	got := []string{z.Destination, z.Rule, z.ConnID, z.TLSVersion, z.SNI, z.ALPN}
	want := []string{r.local("ZOS_PORT"), "zosconnect", line.str("conn_id"),
		"TLSv1.3", "localhost", "http/1.1"}
	for i := range got {
		if got[i] != want[i] {
			t.Errorf("destination, rule, conn id, TLS version, SNI, ALPN: got %q, want %q",
				got, want)
			break
		}
	}
	if !z.TLS || !strings.HasPrefix(z.Cipher, "TLS_") || z.Cipher != line.str("cipher") {
		t.Errorf("TLS %v, cipher %q: want TLS with the logged TLS 1.3 suite %q",
			z.TLS, z.Cipher, line.str("cipher"))
	}
	if !z.CertVerified {
		t.Errorf("client_cert_verified: got false, want true (client_auth = required)")
	}
	checkZosNoCert(t, z.CertMaterial, z.TLVs)
}

// zosAllowedTLVs are the TLV types attlsd writes for an inbound TLS rule
// (README, "What the backend receives"); 0x22 and 0x28 would carry the
// client certificate.
var zosAllowedTLVs = map[string]bool{"0x01": true, "0x02": true, "0x05": true,
	"0x20": true, "0x21": true, "0x23": true, "0x26": true, "0x27": true, "0xe1": true}

func checkZosNoCert(t *testing.T, material, tlvs []string) {
	if len(material) > 0 {
		t.Errorf("client certificate material reached z/OS Connect: %q", material)
	}
	for _, typ := range tlvs {
		if !zosAllowedTLVs[typ] {
			t.Errorf("TLV %s reached z/OS Connect; want only %v", typ, zosAllowedTLVs)
		}
	}
}

// checkZosRestfulSaw checks that the RESTful endpoint saw the z/OS side's
// client certificate, and that the z/OS side logged the outbound call.
func checkZosRestfulSaw(t *testing.T, r *zosRun, rep *zosReport) {
	s := rep.Reply.Restful
	cert := loadCert(t, filepath.Join(certDir, "client.pem")) // zos.hcl's "zos-client"
	ca := loadCert(t, filepath.Join(certDir, "ca.pem"))
	if s.ClientSubject != cert.Subject.String() || s.ClientIssuer != ca.Subject.String() {
		t.Errorf("client certificate: got %q issued by %q, want %q issued by %q",
			s.ClientSubject, s.ClientIssuer, cert.Subject, ca.Subject)
	}
	// zos.hcl's "zos-client" offers http/1.1, which the endpoint speaks.
	if s.TLSVersion != "TLS 1.3" || s.SNI != "localhost" || s.ALPN != "http/1.1" {
		t.Errorf("TLS: got %q, SNI %q, ALPN %q; want TLS 1.3, localhost, http/1.1",
			s.TLSVersion, s.SNI, s.ALPN)
	}
	line := r.closeLine(t, "zos-attlsd", "restful-api")
	if line.str("endpoint") != "localhost:"+itoa(r.ports["REST_PORT"]) ||
		line.str("remote") != r.local("REST_PORT") || line.str("alpn") != "http/1.1" {
		t.Errorf("z/OS side outbound: got endpoint %q, remote %q, ALPN %q; "+
			"want localhost:%d, %s, http/1.1", line.str("endpoint"), line.str("remote"),
			line.str("alpn"), r.ports["REST_PORT"], r.local("REST_PORT"))
	}
}

// checkZosLogs checks that the CICS side originated TLS for CICS's own
// connection, and that both attlsd ran without a race and stopped.
func checkZosLogs(t *testing.T, r *zosRun) {
	line := r.closeLine(t, "cics-attlsd", "to-zosconnect")
	if line.str("endpoint") != "localhost:"+itoa(r.ports["ZOS_PORT"]) ||
		line.str("remote") != r.local("ZOS_PORT") || line.str("tls_version") != "TLSv1.3" {
		t.Errorf("CICS side outbound: got %v; want endpoint localhost:%d over TLSv1.3",
			line, r.ports["ZOS_PORT"])
	}
	for _, name := range []string{"cics-attlsd", "zos-attlsd", "zosconnect", "restful"} {
		text := r.logText(t, name)
		if strings.Contains(text, "DATA RACE") {
			t.Errorf("%s reported a data race:\n%s", name, text)
		}
		if strings.HasSuffix(name, "attlsd") && !strings.Contains(text, `"attlsd stopped"`) {
			t.Errorf("%s: no \"attlsd stopped\" line:\n%s", name, text)
		}
	}
}

// closeLine returns the one "connection closed" line of rule in an
// attlsd log of the run, which must have ended cleanly.
func (r *zosRun) closeLine(t *testing.T, name, rule string) logLine {
	t.Helper()
	var found []logLine
	sc := bufio.NewScanner(strings.NewReader(r.logText(t, name)))
	for sc.Scan() {
		var l logLine
		if json.Unmarshal(sc.Bytes(), &l) == nil &&
			l.str("message") == "connection closed" && l.str("rule") == rule {
			found = append(found, l)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%s: got %d close lines for rule %q, want 1:\n%s",
			name, len(found), rule, r.logText(t, name))
	}
	if found[0].str("reason") != "closed" {
		t.Errorf("%s, rule %q: got reason %q, want closed", name, rule, found[0].str("reason"))
	}
	return found[0]
}

func (r *zosRun) logText(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(r.work, name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
