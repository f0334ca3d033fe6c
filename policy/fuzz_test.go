package policy

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
)

// FuzzLoad writes fuzzed text to a policy file beside the development
// certificates and loads it. Whatever the text, Load must not panic, must
// return a policy exactly when there is no error, and must point every
// diagnostic into the text, at a line and column that lie inside it, as
// FormatDiagnostics prints them (file:line:col). The one diagnostic about
// the whole file, "Policy has no rules", has no position.
func FuzzLoad(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*.hcl")
	seeds = append(seeds, "../examples/dev.hcl")
	for _, file := range seeds {
		if src, err := os.ReadFile(file); err == nil {
			f.Add(src)
		}
	}
	file := filepath.Join(testDir(f), "fuzz.hcl")
	f.Fuzz(func(t *testing.T, src []byte) {
		if err := os.WriteFile(file, src, 0o644); err != nil {
			t.Fatal(err)
		}
		p, diags := Load(file)
		if (p == nil) != diags.HasErrors() {
			t.Fatalf("got policy %v with errors %v:\n%s", p != nil, diags.HasErrors(),
				FormatDiagnostics(diags))
		}
		for _, d := range diags {
			checkPosition(t, d, file, src)
		}
		checkFormatted(t, diags, file)
	})
}

// wholeFile is the summary of the one diagnostic without a position.
const wholeFile = "Policy has no rules"

// checkPosition checks that d points into src, the text of file: a byte
// range inside it whose start line and column agree with the byte offset.
func checkPosition(t *testing.T, d *hcl.Diagnostic, file string, src []byte) {
	t.Helper()
	s := d.Subject
	switch {
	case s == nil:
		t.Fatalf("diagnostic %q has no position", d.Summary)
	case s.Filename != file:
		t.Fatalf("diagnostic %q names file %q, want %q", d.Summary, s.Filename, file)
	case s.Start.Line == 0 && d.Summary == wholeFile:
		return
	case s.Start.Byte < 0 || s.Start.Byte > s.End.Byte || s.End.Byte > len(src):
		t.Fatalf("diagnostic %q: bytes %d-%d outside the %d-byte text",
			d.Summary, s.Start.Byte, s.End.Byte, len(src))
	}
	before := src[:s.Start.Byte]
	if line := 1 + bytes.Count(before, []byte("\n")); s.Start.Line != line {
		t.Fatalf("diagnostic %q at byte %d: got line %d, want %d",
			d.Summary, s.Start.Byte, s.Start.Line, line)
	}
	// Columns count characters, so a column is at most the bytes so far.
	inLine := len(before) - (bytes.LastIndexByte(before, '\n') + 1)
	if s.Start.Column < 1 || s.Start.Column > inLine+1 {
		t.Fatalf("diagnostic %q at byte %d: got column %d, want 1 to %d",
			d.Summary, s.Start.Byte, s.Start.Column, inLine+1)
	}
}

// checkFormatted checks that FormatDiagnostics prints one line per
// diagnostic, each starting with file:line:col (file alone for the
// whole-file one).
func checkFormatted(t *testing.T, diags hcl.Diagnostics, file string) {
	t.Helper()
	text := FormatDiagnostics(diags)
	lines := strings.SplitAfter(text, "\n")
	lines = lines[:len(lines)-1] // after the last newline
	if len(lines) != len(diags) {
		t.Fatalf("formatted %d diagnostics as %d lines:\n%s", len(diags), len(lines), text)
	}
	for i, d := range sortDiagnostics(diags) {
		want := file + ": "
		if d.Summary != wholeFile || d.Subject.Start.Line != 0 {
			want = fmt.Sprintf("%s:%d:%d: ", file, d.Subject.Start.Line, d.Subject.Start.Column)
		}
		if !strings.HasPrefix(lines[i], want) {
			t.Fatalf("diagnostic line %d: got %q, want it to start with %q", i+1, lines[i], want)
		}
	}
}
