package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/attlsd/attlsd/internal/admin"
	"github.com/attlsd/attlsd/internal/logkey"
	"github.com/attlsd/attlsd/internal/memtrim"
	"github.com/attlsd/attlsd/internal/metrics"
	"github.com/attlsd/attlsd/internal/reload"
	"github.com/attlsd/attlsd/policy"
	"github.com/attlsd/attlsd/proxy"
)

// runUsage is attlsd run's synopsis.
const runUsage = "usage: attlsd run --policy FILE [--admin ADDR] [--drain-timeout 30s] " +
	"[--watch auto|poll|off] [--log-format json|console] [--log-level LEVEL]"

// runOptions holds attlsd run's flags.
type runOptions struct {
	file, format, level, watch, admin *string
	drainTimeout                      *time.Duration
}

// runFlags defines attlsd run's flags.
func runFlags() (*flag.FlagSet, runOptions) {
	fs := newFlags("run", runUsage)
	return fs, runOptions{
		file: fs.String("policy", "", "policy `file` (HCL)"),
		format: fs.String("log-format", "json", "json, or console: zerolog's form for people, "+
			"in colour when stderr is a terminal"),
		level: fs.String("log-level", "info", logLevelList),
		watch: fs.String("watch", "auto", "how policy and certificate changes are noticed: "+
			"auto (inotify, polling if unavailable), poll, or off (SIGHUP only)"),
		admin: fs.String("admin", "", "admin endpoint `address` (a port alone means loopback); "+
			"off when empty"),
		drainTimeout: fs.Duration("drain-timeout", 30*time.Second,
			"on SIGTERM or SIGINT, how long open connections may take to finish"),
	}
}

// runCmd loads the policy, binds its listeners and serves until SIGINT or
// SIGTERM, then drains.
func runCmd(args []string, stdout, stderr io.Writer) int {
	fs, o := runFlags()
	operands, code, ok := parseArgs(fs, args, stdout, stderr)
	switch {
	case !ok:
		return code
	case len(operands) != 0:
		return usageError(fs, stderr, fmt.Sprintf("unexpected argument %q", operands[0]))
	case *o.file == "":
		return usageError(fs, stderr, "--policy is required")
	case *o.drainTimeout < 0:
		return usageError(fs, stderr, fmt.Sprintf("--drain-timeout %s is negative; "+
			"0 closes open connections at once", *o.drainTimeout))
	}
	watch, err := reload.ParseWatch(*o.watch)
	if err != nil {
		fmt.Fprintln(stderr, "attlsd:", err)
		return 2
	}
	adminAddr := ""
	if *o.admin != "" {
		if adminAddr, err = admin.ListenAddr(*o.admin); err != nil {
			fmt.Fprintln(stderr, "attlsd:", err)
			return 2
		}
	}
	log, err := newLogger(stderr, *o.format, *o.level)
	if err != nil {
		fmt.Fprintln(stderr, "attlsd:", err)
		return 2
	}

	// A daemon outlives whatever reads its log. Go kills a program that
	// writes to a closed pipe on stdout or stderr (os/signal, "SIGPIPE")
	// unless SIGPIPE is handled; ignored, the write fails with EPIPE and
	// that log line is lost, while every connection goes on.
	signal.Ignore(syscall.SIGPIPE)

	// Signals are caught from here on: one that arrives while starting
	// must stop attlsd cleanly, not kill it with the default action.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)

	p, files, diags := policy.LoadFiles(*o.file)
	reload.LogDiagnostics(log, *o.file, diags)
	if diags.HasErrors() {
		log.Error().Str(logkey.Policy, *o.file).Msg("policy has errors; not starting")
		return 1
	}

	srv := proxy.New(p, log)
	r := reload.New(*o.file, srv, p, files, watch, log)
	var m *metrics.Metrics
	if adminAddr != "" {
		m = metrics.New(srv) // it observes connections from the first
		r.OnReload = m.Reloaded
	}
	if err := srv.Start(); err != nil {
		log.Error().Err(err).Msg("cannot start")
		return 1
	}
	// Bound after the policy's listeners, so that an --admin port that is
	// also a rule's fails as the admin endpoint's, not as the rule's.
	if adminAddr != "" {
		adm, err := serveAdmin(adminAddr, admin.Handler(srv, r, m.Handler(), policyView))
		if err != nil {
			log.Error().Err(err).Msg("cannot start the admin endpoint")
			srv.Close()
			return 1
		}
		defer adm.Close()
	}
	gen, _ := srv.Generation()
	log.Info().Str(logkey.Version, version()).Str(logkey.Policy, p.File).
		Uint64(logkey.Generation, gen).Strs(logkey.Listeners, srv.Addrs()).
		Str(logkey.Watch, string(watch)).Str(logkey.Admin, adminAddr).Msg("attlsd started")

	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		r.Run(ctx)
		close(done)
	}()
	go memtrim.Run(ctx, srv.Accepted, memtrim.Quiet, nil)

	wait(log, sigs, r)
	why := drain(log, srv, sigs, *o.drainTimeout)
	stop()
	closeAll(log, srv, done, sigs, why)
	log.Info().Msg("attlsd stopped")
	return 0
}

// policyView is the policy as the admin endpoint shows it: the same
// effective form as attlsd show --json.
func policyView(p *policy.Policy) any { return p.View() }

// serveAdmin binds the admin endpoint and serves it in the background.
func serveAdmin(addr string, h http.Handler) (*http.Server, error) {
	ln, err := net.Listen("tcp", addr)
	var op *net.OpError
	if errors.As(err, &op) { // its text repeats the address
		err = op.Err
	}
	if err != nil {
		return nil, fmt.Errorf("listen on %s for the admin endpoint (--admin): %w", addr, err)
	}
	s := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go s.Serve(ln)
	return s, nil
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

// drain stops accepting and lets open connections finish, for at most
// timeout; a second SIGINT or SIGTERM cuts it short. The caller then
// closes what is left, for the reason drain returns. Readiness fails
// before the "draining" line is written, so nothing that reads the log
// sees attlsd still ready.
func drain(log zerolog.Logger, srv *proxy.Server, sigs <-chan os.Signal,
	timeout time.Duration) string {
	srv.Drain()
	log.Info().Int(logkey.Open, srv.Open()).Dur(logkey.DrainTimeout, timeout).
		Msg("draining: no new connections; open ones may finish")
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	drained := make(chan error, 1)
	go func() { drained <- srv.Shutdown(ctx) }()
	for {
		select {
		case err := <-drained:
			if err != nil {
				log.Warn().Int(logkey.Open, srv.Open()).
					Msg("drain timeout reached; closing the remaining connections")
				return "drain timeout: closed by attlsd"
			}
			return "closed by attlsd at shutdown"
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				continue
			}
			log.Warn().Str("signal", sig.String()).Int(logkey.Open, srv.Open()).
				Msg("second signal; closing every connection now")
			return "second signal: closed by attlsd at shutdown"
		}
	}
}

// closeGrace bounds the wait for connection goroutines once their
// sockets are closed. They end at once unless something unforeseen holds
// one; attlsd then exits without it rather than hang a stop.
const closeGrace = 2 * time.Second

// closer is what closeAll stops: a *proxy.Server.
type closer interface {
	CloseFor(reason string) error
	Open() int
}

// closeAll waits for the reloader to stop (done), closes every connection
// for reason and waits for their goroutines, at most closeGrace; one more
// SIGINT or SIGTERM ends the wait at once.
func closeAll(log zerolog.Logger, srv closer, done <-chan struct{}, sigs <-chan os.Signal,
	reason string) {
	closed := make(chan struct{})
	go func() {
		<-done
		srv.CloseFor(reason)
		close(closed)
	}()
	grace := time.NewTimer(closeGrace)
	defer grace.Stop()
	for {
		select {
		case <-closed:
			return
		case <-grace.C:
			log.Warn().Int(logkey.Open, srv.Open()).
				Msg("connections still ending after they were closed; exiting without them")
			return
		case sig := <-sigs:
			if sig != syscall.SIGHUP {
				return
			}
		}
	}
}

// logLevels are the --log-level values, as zerolog names them.
var logLevels = []string{"trace", "debug", "info", "warn", "error"}

// logLevelList is logLevels for people.
const logLevelList = "trace, debug, info, warn or error"

// newLogger builds the daemon's logger: JSON lines, or zerolog's console
// form for people, coloured only on a terminal: escape codes in a file or
// a journal are noise.
func newLogger(w io.Writer, format, level string) (zerolog.Logger, error) {
	if !slices.Contains(logLevels, level) {
		return zerolog.Logger{}, fmt.Errorf("unknown --log-level %q (%s)", level, logLevelList)
	}
	lvl, _ := zerolog.ParseLevel(level)
	switch format {
	case "json":
	case "console":
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.RFC3339, NoColor: !isTerminal(w)}
	default:
		return zerolog.Logger{}, fmt.Errorf("unknown --log-format %q (json or console)", format)
	}
	zerolog.DurationFieldUnit = time.Millisecond
	zerolog.DurationFieldInteger = false
	return zerolog.New(w).Level(lvl).With().Timestamp().Logger(), nil
}
