// Command attlsd is the attlsd daemon and its tools: it runs a policy,
// checks one, shows its effective form, and makes development
// certificates.
package main

import (
	"fmt"
	"io"
	"os"
)

const usage = `usage:
  attlsd run --policy FILE [--admin ADDR] [--drain-timeout 30s]
             [--watch auto|poll|off] [--log-format json|console] [--log-level LEVEL]
  attlsd check FILE
  attlsd show [--json] FILE
  attlsd certs init DIR [--hosts NAME,...]
  attlsd version
`

func main() {
	os.Exit(dispatch(os.Args[1:], os.Stdout, os.Stderr))
}

// dispatch runs one subcommand and returns the exit code.
func dispatch(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "run":
		return runCmd(args[1:], stdout, stderr)
	case "check":
		return checkCmd(args[1:], stdout, stderr)
	case "show":
		return showCmd(args[1:], stdout, stderr)
	case "certs":
		return certsCmd(args[1:], stdout, stderr)
	case "version", "--version":
		return versionCmd(args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "attlsd: unknown command %q\n%s", args[0], usage)
	return 2
}

// versionCmd prints the version.
func versionCmd(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("version", "usage: attlsd version")
	operands, code, ok := parseArgs(fs, args, stdout, stderr)
	if !ok {
		return code
	}
	if len(operands) != 0 {
		return usageError(fs, stderr, fmt.Sprintf("unexpected argument %q", operands[0]))
	}
	fmt.Fprintln(stdout, "attlsd", version())
	return 0
}
