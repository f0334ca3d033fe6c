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
	_, p, _, code := loadPolicyArg(fs, args, stdout, stderr)
	if p == nil {
		return code
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
