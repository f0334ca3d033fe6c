package e2e

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// auditor runs one scanner against host:port and judges its report.
type auditor struct {
	name string
	run  func(t *testing.T, addr string) (*audit, []byte)
}

var auditors = []auditor{{"sslscan", sslscanAudit}, {"testssl", testsslAudit}}

// TestTLSSurface audits what attlsd offers a client when the environment
// sets nothing but a certificate and its key, with scanners written
// elsewhere: Debian's sslscan and testssl. Nothing below TLS 1.2, no
// NULL, anonymous, export, RC4, DES or 3DES suite, no suite without
// forward secrecy or without an AEAD (the CBC suites with HMAC-SHA1),
// no renegotiation, no compression. Both key types are scanned, since
// the suites on offer follow the certificate's key.
func TestTLSSurface(t *testing.T) {
	rsaCert, rsaKey := rsaPair(t, t.TempDir())
	envs := []struct{ name, cert, key string }{
		{"ecdsa", filepath.Join(certDir, "server.pem"), filepath.Join(certDir, "server-key.pem")},
		{"rsa", rsaCert, rsaKey},
	}
	for _, env := range envs {
		t.Run(env.name, func(t *testing.T) {
			t.Parallel()
			// A backend that answers: the scanners' connections then stay
			// up as real ones do, and a renegotiation attempt meets the
			// relay's TLS, not a connection already closing for want of
			// a backend.
			b := startBackend(t, echo)
			d := startDaemon(t, "127.0.0.1", 1, func(p []int) string {
				return block("environment", "web", "certificate = "+quote(env.cert),
					"private_key = "+quote(env.key)) +
					inbound("surface", p[0], b.addr)
			})
			for _, au := range auditors {
				t.Run(au.name, func(t *testing.T) {
					a, report := au.run(t, d.addr("127.0.0.1", 0))
					checkCleanSurface(t, a, report)
				})
			}
		})
	}
}

// checkCleanSurface fails the test for every fault of a, and when the
// scan did not see TLS 1.2, TLS 1.3 and at least one suite (a scan that
// saw nothing proves nothing).
func checkCleanSurface(t *testing.T, a *audit, report []byte) {
	t.Helper()
	for _, f := range a.Faults {
		t.Errorf("fault: %s", f)
	}
	protos := strings.Join(a.Protocols, " ")
	if !strings.Contains(protos, "1.2") && !strings.Contains(protos, "1_2") ||
		!strings.Contains(protos, "1.3") && !strings.Contains(protos, "1_3") {
		t.Errorf("protocols offered: got %q, want TLS 1.2 and TLS 1.3", a.Protocols)
	}
	if len(a.Ciphers) == 0 {
		t.Error("ciphers accepted: got none, want some")
	}
	if t.Failed() {
		t.Logf("report:\n%s", report)
	}
}

// weakFaults are faults that an audit of weakServer must report, each as
// a subject and the start of its problem.
var weakFaults = []fault{
	{"TLSv1.0", "offered"},
	{"TLSv1.1", "offered"},
	{"renegotiation", "supported"},
	{"ADH-AES128-GCM-SHA256 (TLSv1.2)", "anonymous"},
	{"NULL-SHA256 (TLSv1.2)", "no encryption"},
	{"AES128-GCM-SHA256 (TLSv1.2)", "no forward secrecy"},
	{"ECDHE-RSA-AES128-SHA (TLSv1.2)", "no AEAD"},
	{"ECDHE-RSA-AES128-SHA (TLSv1.0)", "no AEAD"},
}

// TestTLSSurfaceSeesWeakness runs the sslscan audit against an openssl
// s_server that offers all it can: TLS 1.0 and 1.1, anonymous and NULL
// suites, RSA key exchange, CBC, client renegotiation. Each must be
// reported, or a clean audit of attlsd would prove nothing. (testssl's
// verdict on the same server is kept in testdata: the live run takes
// over a minute.)
func TestTLSSurfaceSeesWeakness(t *testing.T) {
	cert, key := rsaPair(t, t.TempDir())
	addr := startSServer(t, "-cert", cert, "-key", key,
		"-cipher", "ALL:eNULL:@SECLEVEL=0", "-min_protocol", "TLSv1")
	a, report := sslscanAudit(t, addr)
	checkHasFaults(t, a, weakFaults)
	if t.Failed() {
		t.Logf("report:\n%s", report)
	}
}

// checkHasFaults fails the test for each of want that a lacks.
func checkHasFaults(t *testing.T, a *audit, want []fault) {
	t.Helper()
	for _, w := range want {
		if !slices.ContainsFunc(a.Faults, func(f fault) bool {
			return f.Subject == w.Subject && strings.HasPrefix(f.Problem, w.Problem)
		}) {
			t.Errorf("faults: no %q, want one; got %q", w, a.Faults)
		}
	}
}

// TestSurfaceReports checks the report parsers on recorded reports:
// from the weak s_server above, and from attlsd before its default suites
// left out the CBC ones, when Go's own defaults were on offer.
func TestSurfaceReports(t *testing.T) {
	cbc := "no AEAD (CBC with an HMAC)"
	tests := []struct {
		file  string
		parse func([]byte) (*audit, error)
		exact []string // every fault, when set
		has   []fault  // faults that must be among them
	}{
		{file: "sslscan-go-defaults.xml", parse: parseSSLScan, exact: []string{
			"ECDHE-ECDSA-AES128-SHA (TLSv1.2): " + cbc,
			"ECDHE-ECDSA-AES256-SHA (TLSv1.2): " + cbc,
		}},
		{file: "testssl-go-defaults.json", parse: parseTestSSL, exact: []string{
			"ECDHE-ECDSA-AES128-SHA (tls1_2): " + cbc,
			"ECDHE-ECDSA-AES256-SHA (tls1_2): " + cbc,
			"cipherlist_AVERAGE: offered",
		}},
		{file: "sslscan-weak.xml", parse: parseSSLScan, has: weakFaults},
		{file: "testssl-weak.json", parse: parseTestSSL, has: []fault{
			{"TLS1", "offered"},
			{"TLS1_1", "offered"},
			{"cipherlist_NULL", "offered"},
			{"cipherlist_aNULL", "offered"},
			{"cipherlist_AVERAGE", "offered"},
			{"ADH-AES128-GCM-SHA256 (tls1_2)", "anonymous"},
			{"NULL-SHA256 (tls1_2)", "no encryption"},
			{"AES128-GCM-SHA256 (tls1_2)", "no forward secrecy"},
			{"ECDHE-RSA-AES128-SHA (tls1)", "no AEAD"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("testdata", "surface", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			a, err := tt.parse(b)
			if err != nil {
				t.Fatal(err)
			}
			if tt.exact != nil {
				var got []string
				for _, f := range a.Faults {
					got = append(got, f.String())
				}
				slices.Sort(got)
				if want := slices.Sorted(slices.Values(tt.exact)); !slices.Equal(got, want) {
					t.Errorf("faults:\ngot  %q\nwant %q", got, want)
				}
			}
			checkHasFaults(t, a, tt.has)
		})
	}
}

// TestSurfaceReportErrors checks that a scan that did not reach a TLS
// service, or left out a check, is an error and not a clean audit.
func TestSurfaceReportErrors(t *testing.T) {
	tests := []struct {
		name, report string
		parse        func([]byte) (*audit, error)
		want         string
	}{
		{"sslscan no connection", `<document><error><![CDATA[Could not open a ` +
			`connection to host 127.0.0.1 (127.0.0.1) on port 1.]]></error></document>`,
			parseSSLScan, "Could not open a connection"},
		{"sslscan empty", `<document><ssltest host="127.0.0.1"></ssltest></document>`,
			parseSSLScan, "no protocol or renegotiation results"},
		{"testssl scan problem",
			`[{"id":"scanProblem","severity":"FATAL","finding":"Can't connect"}]`, parseTestSSL, "Can't connect"},
		{"testssl partial", `[{"id":"SSLv2","severity":"OK","finding":"not offered"}]`,
			parseTestSSL, `no "SSLv3" finding`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := tt.parse([]byte(tt.report))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got audit %v, error %v; want an error containing %q", a, err, tt.want)
			}
		})
	}
}
