// Command loadgen drives the side-by-side benchmark (test/bench/run.sh):
// a cleartext backend that every proxy forwards to, and the TLS clients
// that measure throughput, handshakes, round trips and idle memory
// through a proxy. Every figure is printed as one "name value" line for
// the script to collect; nothing is judged here.
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	cmds := map[string]func([]string) error{
		"backend":    backendCmd,
		"throughput": throughputCmd,
		"handshake":  handshakeCmd,
		"ping":       pingCmd,
		"idle":       idleCmd,
	}
	run, ok := cmds[os.Args[1]]
	if !ok {
		usage()
	}
	if err := run(os.Args[2:]); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: loadgen backend|throughput|handshake|ping|idle [flags]")
	os.Exit(2)
}
