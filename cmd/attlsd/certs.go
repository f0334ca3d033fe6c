package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/attlsd/attlsd/certs"
)

// certsCmd makes development certificates: attlsd certs init DIR.
func certsCmd(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("certs init", "usage: attlsd certs init DIR [--hosts NAME,...]")
	hosts := fs.String("hosts", "", "extra names or IPs for the server certificate, comma-separated")
	if len(args) == 0 || args[0] != "init" {
		_, code, ok := parseArgs(fs, args, stdout, stderr) // attlsd certs --help
		if !ok {
			return code
		}
		return usageError(fs, stderr, "")
	}
	operands, code, ok := parseArgs(fs, args[1:], stdout, stderr)
	if !ok {
		return code
	}
	if len(operands) != 1 {
		return usageError(fs, stderr, "")
	}
	extra, ok := hostList(*hosts, stderr)
	if !ok {
		return 2
	}
	files, err := certs.InitDev(operands[0], extra, time.Now())
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
