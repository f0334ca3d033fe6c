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
	fs := newFlags("check", "usage: attlsd check FILE")
	file, p, diags, code := loadPolicyArg(fs, args, stdout, stderr)
	if p == nil {
		return code
	}
	fmt.Fprintf(stdout, "%s: ok: %s, %s, %s, %s%s\n", file,
		counted(len(p.Environments), "environment"), counted(len(p.Inbound), "inbound rule"),
		counted(len(p.Outbound), "outbound rule"), counted(len(p.Listeners), "listener"),
		warnings(diags))
	return 0
}

// loadPolicyArg parses the arguments of a command that takes one policy
// file, loads the file and prints its diagnostics on stderr, with a count
// when there are errors. The policy is nil when the command ends there,
// with the exit code returned.
func loadPolicyArg(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) (
	string, *policy.Policy, hcl.Diagnostics, int) {
	operands, code, ok := parseArgs(fs, args, stdout, stderr)
	if !ok {
		return "", nil, nil, code
	}
	if len(operands) != 1 {
		return "", nil, nil, usageError(fs, stderr, "")
	}
	file := operands[0]
	p, diags := policy.Load(file)
	fmt.Fprint(stderr, policy.FormatDiagnostics(diags))
	if diags.HasErrors() {
		fmt.Fprintf(stderr, "%s: %s\n", file, count(diags))
		return file, nil, diags, 1
	}
	return file, p, diags, 0
}

// counted writes "1 listener" or "2 listeners".
func counted(n int, word string) string {
	return fmt.Sprintf("%d %s", n, plural(n, word))
}

// count summarises diagnostics as "2 errors, 1 warning".
func count(diags hcl.Diagnostics) string {
	return counted(len(diags.Errs()), "error") + warnings(diags)
}

// warnings returns ", N warnings" or "".
func warnings(diags hcl.Diagnostics) string {
	w := len(diags) - len(diags.Errs())
	if w == 0 {
		return ""
	}
	return ", " + counted(w, "warning")
}

// plural returns word, with an s unless n is 1.
func plural(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}
