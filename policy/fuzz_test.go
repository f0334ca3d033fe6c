package policy

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse checks that no policy text makes Parse panic, and that a
// policy comes back exactly when there is no error.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.hcl")
	for _, file := range files {
		if src, err := os.ReadFile(file); err == nil {
			f.Add(src)
		}
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, src []byte) {
		p, diags := Parse(src, "fuzz.hcl", dir)
		if (p == nil) != diags.HasErrors() {
			t.Fatalf("got policy %v with errors %v", p != nil, diags.HasErrors())
		}
		_ = FormatDiagnostics(diags)
	})
}
