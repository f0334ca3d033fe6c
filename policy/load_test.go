package policy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
)

func TestLoadResolvesAgainstPolicyFolder(t *testing.T) {
	dir := testDir(t)
	policyFile := filepath.Join(dir, "attlsd.hcl")
	src := `
environment "web" {
  certificate = "certs/server.pem"
  private_key = "certs/server-key.pem"
  trust       = ["certs/ca.pem"]
}
inbound "api" {
  port        = 8443
  environment = "web"
  backend     = "unix:run/app.sock"
}
`
	writeTestFile(t, policyFile, []byte(src), 0o644)
	t.Chdir(t.TempDir()) // relative paths must not depend on the working folder

	p, diags := Load(policyFile)
	if diags.HasErrors() {
		t.Fatalf("Load:\n%s", FormatDiagnostics(diags))
	}
	env := p.Environments[0]
	tests := []struct{ name, got, want string }{
		{"File", p.File, policyFile},
		{"CertFile", env.CertFile, filepath.Join(dir, "certs", "server.pem")},
		{"KeyFile", env.KeyFile, filepath.Join(dir, "certs", "server-key.pem")},
		{"TrustFiles", env.TrustFiles[0], filepath.Join(dir, "certs", "ca.pem")},
		{"Backend", p.Inbound[0].Backend.Address, filepath.Join(dir, "run", "app.sock")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("got %q, want %q", tt.got, tt.want)
			}
		})
	}
}

func TestLoadRelativePolicyPath(t *testing.T) {
	dir := testDir(t)
	src := "inbound \"a\" {\n  port = 1\n  tls = false\n  backend = \"unix:s\"\n}\n"
	writeTestFile(t, filepath.Join(dir, "p.hcl"), []byte(src), 0o644)
	t.Chdir(dir)

	p, diags := Load("p.hcl")
	if diags.HasErrors() {
		t.Fatalf("Load:\n%s", FormatDiagnostics(diags))
	}
	if want := filepath.Join(dir, "s"); p.Inbound[0].Backend.Address != want {
		t.Errorf("got backend %q, want %q", p.Inbound[0].Backend.Address, want)
	}
}

func TestLoadMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nope.hcl")
	p, diags := Load(path)
	if p != nil || !diags.HasErrors() {
		t.Fatalf("got policy %v, diagnostics %v, want nil and an error", p, diags)
	}
	got := FormatDiagnostics(diags)
	if want := path + ": Cannot read policy: open " + path; !strings.HasPrefix(got, want) {
		t.Errorf("got %q, want it to start with %q", got, want)
	}
}

func TestLoadErrorsGiveNilPolicy(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "bad.hcl")
	writeTestFile(t, path, []byte(
		"inbound \"a\" {\n  port = 0\n  tls = false\n  backend = \"h:1\"\n}\n"), 0o644)
	p, diags := Load(path)
	if p != nil {
		t.Errorf("got a policy, want nil with errors")
	}
	if !strings.HasPrefix(FormatDiagnostics(diags), path+":2:10: Invalid port") {
		t.Errorf("got %q, want the first error at %s:2:10", FormatDiagnostics(diags), path)
	}
}

func TestFormatDiagnostics(t *testing.T) {
	at := func(line, col int) *hcl.Range {
		return &hcl.Range{Filename: "p.hcl", Start: hcl.Pos{Line: line, Column: col}}
	}
	tests := []struct {
		name  string
		diags hcl.Diagnostics
		want  string
	}{
		{"none", nil, ""},
		{"error with detail", hcl.Diagnostics{
			{Severity: hcl.DiagError, Summary: "Bad", Detail: "why", Subject: at(3, 7)},
		}, "p.hcl:3:7: Bad: why\n"},
		{"warning without detail", hcl.Diagnostics{
			{Severity: hcl.DiagWarning, Summary: "Careful", Subject: at(1, 1)},
		}, "p.hcl:1:1: warning: Careful\n"},
		{"whole file", hcl.Diagnostics{
			{Severity: hcl.DiagError, Summary: "Empty", Subject: fileRange("p.hcl")},
		}, "p.hcl: Empty\n"},
		{"no subject", hcl.Diagnostics{
			{Severity: hcl.DiagError, Summary: "Lost", Detail: "no file"},
		}, "Lost: no file\n"},
		{"detail on one line", hcl.Diagnostics{
			{Severity: hcl.DiagError, Summary: "Long", Detail: "one\n  two", Subject: at(2, 2)},
		}, "p.hcl:2:2: Long: one two\n"},
		{"source order", hcl.Diagnostics{
			{Severity: hcl.DiagError, Summary: "C", Subject: at(9, 1)},
			{Severity: hcl.DiagWarning, Summary: "B", Subject: at(2, 5)},
			{Severity: hcl.DiagError, Summary: "A", Subject: at(2, 1)},
			{Severity: hcl.DiagError, Summary: "File", Subject: fileRange("p.hcl")},
		}, "p.hcl: File\np.hcl:2:1: A\np.hcl:2:5: warning: B\np.hcl:9:1: C\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := FormatDiagnostics(tt.diags); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestParseSortsDiagnostics(t *testing.T) {
	src, err := os.ReadFile("testdata/bad_port.hcl")
	if err != nil {
		t.Fatal(err)
	}
	_, diags := Parse(src, "bad_port.hcl", t.TempDir())
	for i := 1; i < len(diags); i++ {
		if diags[i].Subject.Start.Line < diags[i-1].Subject.Start.Line {
			t.Fatalf("got line %d after line %d, want source order",
				diags[i].Subject.Start.Line, diags[i-1].Subject.Start.Line)
		}
	}
}

// TestLoadSpecialFiles: a policy path that is not a regular file, or is
// too large, is refused with a diagnostic about the whole file, at once:
// a named pipe must not block the load, nor a device fill memory.
func TestLoadSpecialFiles(t *testing.T) {
	dir := t.TempDir()
	specialFiles(t, dir)
	tests := []struct {
		name, path, want string
	}{
		{"named pipe", filepath.Join(dir, "fifo.pem"), "is a named pipe, not a regular file"},
		{"device", "/dev/zero", `"/dev/zero" is a character device, not a regular file`},
		{"link to a device", filepath.Join(dir, "zero.pem"), "is a character device"},
		{"folder", dir, "is a folder, not a regular file"},
		{"too large", filepath.Join(dir, "huge.pem"), "is larger than 4 MiB"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			done := make(chan hcl.Diagnostics, 1)
			go func() {
				_, diags := Load(tt.path)
				done <- diags
			}()
			var diags hcl.Diagnostics
			select {
			case diags = <-done:
			case <-time.After(10 * time.Second):
				t.Fatalf("Load(%q) still blocked after 10s", tt.path)
			}
			got := FormatDiagnostics(diags)
			want := tt.path + ": Cannot read policy: "
			if !strings.HasPrefix(got, want) || !strings.Contains(got, tt.want) ||
				strings.Count(got, "\n") != 1 {
				t.Errorf("got %q, want one line %q... with %q", got, want, tt.want)
			}
		})
	}
}
