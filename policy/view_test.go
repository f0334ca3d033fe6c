package policy

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestGoldenView writes the View of every valid testdata policy as JSON
// and as text, and compares them with the .view.json and .view.txt files
// beside it. Certificates are made afresh for each run, so their serial
// and dates print as $SERIAL, $NOT_BEFORE and $NOT_AFTER.
func TestGoldenView(t *testing.T) {
	dir := testDir(t)
	files, err := filepath.Glob("testdata/valid_*.hcl")
	if err != nil || len(files) == 0 {
		t.Fatalf("got %d valid policies in testdata (%v), want some", len(files), err)
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".hcl")
		t.Run(name, func(t *testing.T) {
			src, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			p := parseString(t, dir, string(src))
			v := p.View()
			v.File = filepath.ToSlash(file)
			scrubCertificates(&v)

			b, err := json.MarshalIndent(v, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got := strings.ReplaceAll(string(b)+"\n", dir, "$DIR")
			base := strings.TrimSuffix(file, ".hcl")
			compareGolden(t, base+".view.json", got)

			var text strings.Builder
			if err := v.WriteText(&text); err != nil {
				t.Fatal(err)
			}
			compareGolden(t, base+".view.txt", strings.ReplaceAll(text.String(), dir, "$DIR"))
		})
	}
}

// scrubCertificates replaces what changes with every certificate made.
func scrubCertificates(v *View) {
	for i := range v.Environments {
		if c := v.Environments[i].Certificate; c != nil {
			c.Serial, c.NotBefore, c.NotAfter = "$SERIAL", "$NOT_BEFORE", "$NOT_AFTER"
		}
	}
}

// TestViewJSONRoundTrip reads a View back from its JSON: "any" and the
// nulls come back as they were.
func TestViewJSONRoundTrip(t *testing.T) {
	dir := testDir(t)
	src, err := os.ReadFile("testdata/valid_outbound.hcl")
	if err != nil {
		t.Fatal(err)
	}
	v := parseString(t, dir, string(src)).View()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var got View
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, v) {
		t.Errorf("round trip:\ngot  %+v\nwant %+v", got, v)
	}
}

// TestViewCertificate checks the certificate facts against the file.
func TestViewCertificate(t *testing.T) {
	dir := testDir(t)
	p := parseString(t, dir, `
environment "web" {
  certificate = "certs/server.pem"
  private_key = "certs/server-key.pem"
}
inbound "api" {
  port        = 8443
  environment = "web"
  backend     = "127.0.0.1:9080"
}`)
	leaf := p.Environments[0].Pair.Leaf
	c := p.View().Environments[0].Certificate
	if c == nil {
		t.Fatal("certificate: got null, want the server certificate")
	}
	notAfter, err := time.Parse(time.RFC3339, c.NotAfter)
	if err != nil || !notAfter.Equal(leaf.NotAfter) {
		t.Errorf("not_after: got %q (%v), want %s", c.NotAfter, err, leaf.NotAfter)
	}
	if want := strings.ToUpper(leaf.SerialNumber.Text(16)); c.Serial != want {
		t.Errorf("serial: got %q, want %q", c.Serial, want)
	}
	if c.File != filepath.Join(dir, "certs/server.pem") ||
		c.PrivateKey != filepath.Join(dir, "certs/server-key.pem") {
		t.Errorf("files: got %q and %q", c.File, c.PrivateKey)
	}
}

func TestFormatDuration(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{10 * time.Second, "10s"},
		{time.Minute, "1m"},
		{90 * time.Second, "1m30s"},
		{time.Hour, "1h"},
		{90 * time.Minute, "1h30m"},
		{time.Hour + time.Second, "1h0m1s"},
		{2500 * time.Millisecond, "2.5s"},
		{500 * time.Millisecond, "500ms"},
	}
	for _, tt := range tests {
		got := formatDuration(tt.d)
		if got != tt.want {
			t.Errorf("formatDuration(%s): got %q, want %q", tt.d, got, tt.want)
		}
		if back, err := time.ParseDuration(got); err != nil || back != tt.d {
			t.Errorf("ParseDuration(%q): got %s, %v; want %s", got, back, err, tt.d)
		}
	}
}

// TestViewTextAddress checks that show says what each listen address
// takes: 0.0.0.0 and :: are dual-stack, like no address at all.
func TestViewTextAddress(t *testing.T) {
	tests := []struct {
		name, attr, want string
	}{
		{"omitted", "", "all (IPv4 and IPv6)"},
		{"IPv4 unspecified", `address = "0.0.0.0"`,
			"0.0.0.0 (all addresses, IPv4 and IPv6: one dual-stack socket)"},
		{"IPv6 unspecified", `address = "::"`,
			":: (all addresses, IPv4 and IPv6: one dual-stack socket)"},
		{"specific", `address = "127.0.0.1"`, "127.0.0.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := parseString(t, t.TempDir(), "inbound \"a\" {\n  port = 8443\n  "+
				tt.attr+"\n  tls = false\n  backend = \"127.0.0.1:9080\"\n}\n")
			var text strings.Builder
			if err := p.View().WriteText(&text); err != nil {
				t.Fatal(err)
			}
			want := fmt.Sprintf("    %-*s %s\n", keyWidth, "address", tt.want)
			if !strings.Contains(text.String(), want) {
				t.Errorf("got:\n%s\nwant a line %q", text.String(), want)
			}
		})
	}
}

// TestViewTextSuites: the cipher_suites line says whether the suites,
// listed or default, apply at all.
func TestViewTextSuites(t *testing.T) {
	const suite = "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"
	tests := []struct {
		name  string
		env   EnvironmentView
		want  []string
		wantN int // lines
	}{
		{"default, TLS 1.2 on", EnvironmentView{CipherSuitesDefault: true, CipherSuitesApply: true},
			[]string{"the default: ECDHE", "(TLS 1.2 only;"}, 2},
		{"listed, TLS 1.2 on", EnvironmentView{CipherSuites: []string{suite}, CipherSuitesApply: true},
			[]string{suite, "(TLS 1.2 only;"}, 2},
		{"default, TLS 1.3 only", EnvironmentView{CipherSuitesDefault: true},
			[]string{"do not apply: tls_versions leaves out TLS 1.2"}, 1},
		{"listed, TLS 1.3 only", EnvironmentView{CipherSuites: []string{suite}},
			[]string{suite, "(unused: tls_versions leaves out TLS 1.2"}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := suitesText(tt.env)
			if len(got) != tt.wantN {
				t.Fatalf("got %q, want %d lines", got, tt.wantN)
			}
			for i, w := range tt.want {
				if !strings.HasPrefix(got[i], w) {
					t.Errorf("line %d: got %q, want it to start with %q", i+1, got[i], w)
				}
			}
		})
	}
}

// TestViewTextPrintable: a path or subject with a newline or a terminal
// escape prints quoted on its own line, so it cannot forge output lines.
func TestViewTextPrintable(t *testing.T) {
	v := View{File: "/p/a\nb.hcl", Environments: []EnvironmentView{{
		Name: "web",
		Certificate: &CertificateView{File: "/c/\x1b[31mred.pem",
			Subject: "CN=evil\nforged line"},
		CipherSuitesDefault: true, CipherSuitesApply: true,
	}}}
	var text strings.Builder
	if err := v.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	out := text.String()
	for _, want := range []string{
		"policy \"/p/a\\nb.hcl\"\n",
		" \"/c/\\x1b[31mred.pem\"\n",
		" \"CN=evil\\nforged line\"\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("got:\n%s\nwant it to hold %q", out, want)
		}
	}
	if strings.Contains(out, "\x1b") || strings.Contains(out, "\nforged") {
		t.Errorf("got raw control characters in:\n%q", out)
	}
}
