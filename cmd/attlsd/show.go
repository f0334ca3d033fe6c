package main

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/attlsd/attlsd/policy"
)

// showCmd loads a policy as check does and prints its effective form:
// every default explicit, rules in match order. Text by default, JSON
// with --json. Problems go to stderr as file:line:col lines; errors print
// nothing on stdout and exit 1.
func showCmd(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("show", "usage: attlsd show [--json] FILE")
	asJSON := fs.Bool("json", false, "print JSON instead of text")
	operands, code, ok := parseArgs(fs, args, stdout, stderr)
	if !ok {
		return code
	}
	if len(operands) != 1 {
		return usageError(fs, stderr, "")
	}
	file := operands[0]
	p, diags := policy.Load(file)
	fmt.Fprint(stderr, policy.FormatDiagnostics(diags))
	if diags.HasErrors() {
		fmt.Fprintf(stderr, "%s: %s\n", file, count(diags))
		return 1
	}
	if err := writeView(stdout, p.View(), *asJSON); err != nil {
		fmt.Fprintln(stderr, "attlsd: show:", err)
		return 1
	}
	return 0
}

// writeView writes v as indented JSON or as text.
func writeView(w io.Writer, v policy.View, asJSON bool) error {
	if !asJSON {
		return v.WriteText(w)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
