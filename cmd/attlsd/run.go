package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/rs/zerolog"

	"github.com/attlsd/attlsd/internal/logkey"
	"github.com/attlsd/attlsd/policy"
	"github.com/attlsd/attlsd/proxy"
)

// runCmd loads the policy, binds its listeners and serves until SIGINT or
// SIGTERM.
func runCmd(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("policy", "", "policy file (HCL)")
	format := fs.String("log-format", "json", "json or console")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *file == "" || fs.NArg() != 0 {
		fmt.Fprintln(stderr, "usage: attlsd run --policy FILE [--log-format json|console] [--log-level LEVEL]")
		return 2
	}
	log, err := newLogger(stderr, *format, *level)
	if err != nil {
		fmt.Fprintln(stderr, "attlsd:", err)
		return 2
	}

	// Signals are caught from here on: one that arrives while starting
	// must stop attlsd cleanly, not kill it with the default action.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)

	p, diags := policy.Load(*file)
	logDiagnostics(log, *file, diags)
	if diags.HasErrors() {
		log.Error().Str(logkey.Policy, *file).Msg("policy has errors; not starting")
		return 1
	}

	srv := proxy.New(p, log)
	if err := srv.Start(); err != nil {
		log.Error().Err(err).Msg("cannot start")
		return 1
	}
	log.Info().Str(logkey.Version, version()).Str(logkey.Policy, p.File).
		Strs(logkey.Listeners, srv.Addrs()).Msg("attlsd started")

	wait(log, sigs)
	srv.Close()
	log.Info().Msg("attlsd stopped")
	return 0
}

// wait blocks until SIGINT or SIGTERM arrives on sigs.
func wait(log zerolog.Logger, sigs <-chan os.Signal) {
	for sig := range sigs {
		if sig == syscall.SIGHUP {
			// TODO(attlsd): hot reload; until then a changed policy needs a restart.
			log.Warn().Msg("SIGHUP received; hot reload is not available yet, restart to apply a changed policy")
			continue
		}
		log.Info().Str("signal", sig.String()).Msg("stopping")
		return
	}
}

// newLogger builds the daemon's logger: JSON lines, or zerolog's console
// form for people.
func newLogger(w io.Writer, format, level string) (zerolog.Logger, error) {
	lvl, err := zerolog.ParseLevel(level)
	if err != nil || level == "" {
		return zerolog.Logger{}, fmt.Errorf("unknown --log-level %q", level)
	}
	switch format {
	case "json":
	case "console":
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.RFC3339}
	default:
		return zerolog.Logger{}, fmt.Errorf("unknown --log-format %q (json or console)", format)
	}
	zerolog.DurationFieldUnit = time.Millisecond
	zerolog.DurationFieldInteger = false
	return zerolog.New(w).Level(lvl).With().Timestamp().Logger(), nil
}

// logDiagnostics logs each policy problem as its file:line:col line, at
// error or warn level by severity.
func logDiagnostics(log zerolog.Logger, file string, diags hcl.Diagnostics) {
	for _, d := range diags {
		ev := log.Warn()
		if d.Severity == hcl.DiagError {
			ev = log.Error()
		}
		line := strings.TrimRight(policy.FormatDiagnostics(hcl.Diagnostics{d}), "\n")
		ev.Str(logkey.Policy, file).Msg(line)
	}
}
