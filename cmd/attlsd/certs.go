package main

import (
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/attlsd/attlsd/certs"
)

// certsCmd makes development certificates: attlsd certs init DIR.
func certsCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "init" {
		fmt.Fprintln(stderr, "usage: attlsd certs init DIR [--hosts NAME,...]")
		return 2
	}
	fs := flag.NewFlagSet("certs init", flag.ContinueOnError)
	fs.SetOutput(stderr)
	hosts := fs.String("hosts", "", "extra names or IPs for the server certificate, comma-separated")
	if err := fs.Parse(reorder(args[1:])); err != nil {
		return 2
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "usage: attlsd certs init DIR [--hosts NAME,...]")
		return 2
	}
	extra, ok := hostList(*hosts, stderr)
	if !ok {
		return 2
	}
	files, err := certs.InitDev(fs.Arg(0), extra, time.Now())
	if err != nil {
		fmt.Fprintln(stderr, "attlsd: certs init:", err)
		return 1
	}
	for _, f := range files {
		fmt.Fprintln(stdout, f)
	}
	return 0
}

// hostList splits --hosts at commas, leaving out empty entries, and
// prints one line for each host that cannot go into a certificate.
func hostList(hosts string, stderr io.Writer) ([]string, bool) {
	var out []string
	ok := true
	for _, h := range strings.Split(hosts, ",") {
		if h = strings.TrimSpace(h); h == "" {
			continue
		}
		if err := certs.CheckHost(h); err != nil {
			fmt.Fprintln(stderr, "attlsd: certs init: --hosts:", err)
			ok = false
		}
		out = append(out, h)
	}
	return out, ok
}

// reorder moves flags before positional arguments, so that both
// "init DIR --hosts x" and "init --hosts x DIR" work with package flag.
func reorder(args []string) []string {
	var flags, rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case !strings.HasPrefix(a, "-"):
			rest = append(rest, a)
		case strings.Contains(a, "=") || i+1 == len(args):
			flags = append(flags, a)
		default:
			flags = append(flags, a, args[i+1])
			i++
		}
	}
	return append(flags, rest...)
}
