package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/attlsd/attlsd/internal/logkey"
	"github.com/attlsd/attlsd/internal/reload"
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
	watchFlag := fs.String("watch", "auto", "how policy and certificate changes are noticed: auto (inotify, polling if unavailable), poll, or off (SIGHUP only)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *file == "" || fs.NArg() != 0 {
		fmt.Fprintln(stderr, "usage: attlsd run --policy FILE [--log-format json|console] [--log-level LEVEL] [--watch auto|poll|off]")
		return 2
	}
	watch, err := reload.ParseWatch(*watchFlag)
	if err != nil {
		fmt.Fprintln(stderr, "attlsd:", err)
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

	p, files, diags := policy.LoadFiles(*file)
	reload.LogDiagnostics(log, *file, diags)
	if diags.HasErrors() {
		log.Error().Str(logkey.Policy, *file).Msg("policy has errors; not starting")
		return 1
	}

	srv := proxy.New(p, log)
	if err := srv.Start(); err != nil {
		log.Error().Err(err).Msg("cannot start")
		return 1
	}
	gen, _ := srv.Generation()
	log.Info().Str(logkey.Version, version()).Str(logkey.Policy, p.File).
		Uint64(logkey.Generation, gen).Strs(logkey.Listeners, srv.Addrs()).
		Str(logkey.Watch, string(watch)).Msg("attlsd started")

	ctx, stop := context.WithCancel(context.Background())
	r := reload.New(*file, srv, p, files, watch, log)
	done := make(chan struct{})
	go func() {
		r.Run(ctx)
		close(done)
	}()

	wait(log, sigs, r)
	stop()
	<-done
	srv.Close()
	log.Info().Msg("attlsd stopped")
	return 0
}

// wait blocks until SIGINT or SIGTERM arrives on sigs; SIGHUP asks r
// for a reload.
func wait(log zerolog.Logger, sigs <-chan os.Signal, r *reload.Reloader) {
	for sig := range sigs {
		if sig == syscall.SIGHUP {
			log.Info().Msg("SIGHUP received; reloading")
			r.Trigger()
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
