package main

import (
	"flag"
	"fmt"
	"io"

	"github.com/hashicorp/hcl/v2"

	"github.com/attlsd/attlsd/policy"
)

// checkCmd validates a policy, certificates included, and binds nothing.
// Problems go to stderr as file:line:col lines; warnings alone do not
// fail the check.
func checkCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "usage: attlsd check FILE")
		return 2
	}
	file := fs.Arg(0)
	p, diags := policy.Load(file)
	fmt.Fprint(stderr, policy.FormatDiagnostics(diags))
	if diags.HasErrors() {
		fmt.Fprintf(stderr, "%s: %s\n", file, count(diags))
		return 1
	}
	fmt.Fprintf(stdout, "%s: ok: %d environments, %d inbound rules, %d outbound rules, %d listeners%s\n",
		file, len(p.Environments), len(p.Inbound), len(p.Outbound), len(p.Listeners), warnings(diags))
	return 0
}

// count summarises diagnostics as "2 errors, 1 warning".
func count(diags hcl.Diagnostics) string {
	e := len(diags.Errs())
	return fmt.Sprintf("%d %s%s", e, plural(e, "error"), warnings(diags))
}

// warnings returns ", N warnings" or "".
func warnings(diags hcl.Diagnostics) string {
	w := len(diags) - len(diags.Errs())
	if w == 0 {
		return ""
	}
	return fmt.Sprintf(", %d %s", w, plural(w, "warning"))
}

func plural(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}
