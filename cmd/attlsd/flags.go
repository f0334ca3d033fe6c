package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// newFlags returns the flag set of a subcommand. Its usage, for -h and
// --help and after a bad command line, is synopsis and then each flag.
func newFlags(name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.Usage = func() { printUsage(fs, synopsis) }
	return fs
}

// printUsage writes synopsis and the flags of fs, spelled with two
// dashes as attlsd documents them, to fs's output.
func printUsage(fs *flag.FlagSet, synopsis string) {
	w := fs.Output()
	fmt.Fprintln(w, synopsis)
	fs.VisitAll(func(f *flag.Flag) { printFlag(w, f) })
}

// printFlag writes one flag as package flag does, with two dashes.
func printFlag(w io.Writer, f *flag.Flag) {
	name, usage := flag.UnquoteUsage(f)
	line := "  --" + f.Name
	if name != "" {
		line += " " + name
	}
	line += "\n    \t" + strings.ReplaceAll(usage, "\n", "\n    \t")
	switch {
	case f.DefValue == "" || f.DefValue == "false":
	case name == "string":
		line += fmt.Sprintf(" (default %q)", f.DefValue)
	default:
		line += " (default " + f.DefValue + ")"
	}
	fmt.Fprintln(w, line)
}

// parseArgs parses args into fs, flags before, between or after the
// operands ("show FILE --json"); "--" ends the flags. It returns the
// operands and, when the command is to stop, its exit code: 0 after -h
// or --help, with the usage on stdout; 2 for a bad flag, with the error
// and the usage on stderr.
func parseArgs(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) ([]string, int, bool) {
	usage := fs.Usage
	fs.Usage = func() {} // printed below, where it belongs
	defer func() { fs.Usage = usage }()
	fs.SetOutput(stderr)
	operands, err := interspersed(fs, args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fs.SetOutput(stdout)
		usage()
		return nil, 0, false
	case err != nil:
		usage()
		return nil, 2, false
	}
	return operands, 0, true
}

// interspersed parses flags wherever they are among the operands, which
// it returns in order.
func interspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var operands []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if used := len(args) - len(rest); used > 0 && args[used-1] == "--" {
			return append(operands, rest...), nil
		}
		if len(rest) == 0 {
			return operands, nil
		}
		operands, args = append(operands, rest[0]), rest[1:]
	}
}

// usageError prints msg and the usage of fs to stderr, and returns the
// exit code of a bad command line.
func usageError(fs *flag.FlagSet, stderr io.Writer, msg string) int {
	fs.SetOutput(stderr)
	if msg != "" {
		fmt.Fprintln(stderr, "attlsd:", msg)
	}
	fs.Usage()
	return 2
}
