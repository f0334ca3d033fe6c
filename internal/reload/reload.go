// Package reload keeps a running proxy.Server on the newest valid policy.
// It reloads on SIGHUP (Trigger), on changes to the policy file or any
// file it names (fsnotify on their folders, or polling where inotify is
// unavailable), builds the whole new policy first, and swaps it in only
// when every part of it loaded: a broken policy leaves the running one in
// place and logs why, with file:line:col.
package reload

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/hashicorp/hcl/v2"
	"github.com/rs/zerolog"

	"github.com/attlsd/attlsd/internal/logkey"
	"github.com/attlsd/attlsd/policy"
	"github.com/attlsd/attlsd/proxy"
)

// Watch says how file changes are noticed.
type Watch string

// Watch modes.
const (
	WatchAuto Watch = "auto" // fsnotify; polling if it cannot be set up
	WatchPoll Watch = "poll" // polling only
	WatchOff  Watch = "off"  // SIGHUP only
)

// ParseWatch checks a --watch value.
func ParseWatch(s string) (Watch, error) {
	switch w := Watch(s); w {
	case WatchAuto, WatchPoll, WatchOff:
		return w, nil
	}
	return "", fmt.Errorf("unknown --watch %q (auto, poll or off)", s)
}

// Timing of file-triggered reloads. A burst of events (an editor's save,
// a Secret update) settles for settleDelay before one reload; a reload
// that fails right after a burst, perhaps on a file caught half written,
// is retried once after retryDelay. Polling looks every pollInterval.
const (
	settleDelay  = 150 * time.Millisecond
	retryDelay   = time.Second
	pollInterval = time.Second
)

// newWatcher is fsnotify.NewWatcher; tests replace it to fail.
var newWatcher = fsnotify.NewWatcher

// Reloader loads the policy at file into srv on every trigger. Run owns
// it once started; Trigger may be called from any goroutine.
type Reloader struct {
	file  string
	srv   *proxy.Server
	log   zerolog.Logger
	watch Watch

	hup  chan struct{}
	reqs chan chan result

	// OnReload, when set before Run, hears of every reload that was
	// tried: applied or rejected. File events that change nothing are
	// not reloads.
	OnReload func(applied bool)

	digest [32]byte // of the policy srv runs
	files  []string // named by the newest policy read, valid or not

	watcher *fsnotify.Watcher
	dirs    map[string]map[string]bool // watched folder → names that matter
	polling bool
	stamps  string // files' sizes and times at the last poll
}

// New returns a reloader for srv, which runs p, loaded from file. files
// are those LoadFiles returned with p.
func New(file string, srv *proxy.Server, p *policy.Policy, files []string,
	watch Watch, log zerolog.Logger) *Reloader {
	if p.File != "" {
		file = p.File
	}
	return &Reloader{
		file:   file,
		srv:    srv,
		log:    log,
		watch:  watch,
		hup:    make(chan struct{}, 1),
		reqs:   make(chan chan result),
		digest: p.Digest,
		files:  files,
		dirs:   map[string]map[string]bool{},
	}
}

// Trigger asks for a reload that applies even an unchanged policy, as
// SIGHUP does. Triggers that arrive during a reload give one more reload
// after it.
func (r *Reloader) Trigger() {
	select {
	case r.hup <- struct{}{}:
	default:
	}
}

// result is what a reload asked for by Reload came to.
type result struct {
	gen uint64
	err error
}

// Reload reloads at once, like Trigger, and returns the generation now
// running or why the reload was rejected. Run must be running.
func (r *Reloader) Reload(ctx context.Context) (uint64, error) {
	reply := make(chan result, 1)
	select {
	case r.reqs <- reply:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	select {
	case res := <-reply:
		return res.gen, res.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// Run serves triggers until ctx ends.
func (r *Reloader) Run(ctx context.Context) {
	r.startWatching()
	defer func() {
		if r.watcher != nil {
			r.watcher.Close()
		}
	}()

	settle := stoppedTimer()
	retry := stoppedTimer()
	// The ticker runs in every mode: polling may start later, when a
	// folder cannot be watched.
	poll := time.NewTicker(pollInterval)
	defer poll.Stop()
	r.stamps = stamps(r.files)
	var events <-chan fsnotify.Event
	var errs <-chan error
	if r.watcher != nil {
		events, errs = r.watcher.Events, r.watcher.Errors
	}
	r.catchUp()

	for {
		select {
		case <-ctx.Done():
			return
		case <-r.hup:
			r.reload("signal", true)
		case reply := <-r.reqs:
			gen, err := r.reload("request", true)
			reply <- result{gen, err}
		case ev := <-events:
			if r.matters(ev) {
				settle.Reset(settleDelay)
			}
		case err := <-errs:
			// An overflow loses events: reload to be sure.
			r.log.Warn().Err(err).Msg("file watch error; reloading to be sure")
			settle.Reset(settleDelay)
		case <-settle.C:
			if _, err := r.reload("file", false); err != nil {
				retry.Reset(retryDelay)
			}
		case <-retry.C:
			r.reload("file", false)
		case <-poll.C:
			if !r.polling {
				continue
			}
			if s := stamps(r.files); s != r.stamps {
				r.stamps = s
				r.reload("poll", false)
			}
		}
	}
}

// catchUp reloads once if the files changed between the first load and
// the start of watching: no event or stamp would ever show that change.
func (r *Reloader) catchUp() {
	switch {
	case r.watch == WatchOff:
	case r.polling:
		r.reload("poll", false)
	default:
		r.reload("file", false)
	}
}

// reload builds the policy and applies it. Unless force, a policy whose
// digest equals the running one's is not applied. It returns the
// generation running afterwards, or why the reload was rejected.
func (r *Reloader) reload(trigger string, force bool) (uint64, error) {
	p, files, diags := policy.LoadFiles(r.file)
	r.files = files
	r.rewatch()
	LogDiagnostics(r.log, r.file, diags)
	gen, cur := r.srv.Generation()
	if diags.HasErrors() {
		r.log.Error().Str(logkey.Trigger, trigger).Uint64(logkey.Generation, gen).
			Str(logkey.Policy, r.file).
			Msg("reload rejected: policy has errors; the running policy stays")
		r.observe(false)
		return gen, errors.New(strings.TrimSpace(policy.FormatDiagnostics(errorsOnly(diags))))
	}
	if !force && p.Digest == r.digest {
		r.log.Debug().Str(logkey.Trigger, trigger).Msg("policy files unchanged; nothing to reload")
		return gen, nil
	}
	changes := policy.Diff(cur, p)
	next, err := r.srv.Apply(p)
	if err != nil {
		r.log.Error().Err(err).Str(logkey.Trigger, trigger).Str(logkey.Policy, r.file).
			Uint64(logkey.Generation, gen).Msg("reload rejected; the running policy stays")
		r.observe(false)
		return gen, err
	}
	r.digest = p.Digest
	msg := "policy reloaded"
	if changes.Empty() {
		msg = "policy reloaded; nothing changed"
	}
	r.log.Info().Str(logkey.Trigger, trigger).Uint64(logkey.Generation, next).
		Str(logkey.Policy, r.file).
		Strs(logkey.Added, changes.Added).Strs(logkey.Removed, changes.Removed).
		Strs(logkey.Changed, changes.Changed).Strs(logkey.Rotated, changes.Rotated).
		Strs(logkey.Listeners, r.srv.Addrs()).Msg(msg)
	r.observe(true)
	return next, nil
}

// errorsOnly keeps the errors of diags.
func errorsOnly(diags hcl.Diagnostics) hcl.Diagnostics {
	var out hcl.Diagnostics
	for _, d := range diags {
		if d.Severity == hcl.DiagError {
			out = append(out, d)
		}
	}
	return out
}

func (r *Reloader) observe(applied bool) {
	if r.OnReload != nil {
		r.OnReload(applied)
	}
}

// startWatching sets up fsnotify, or polling when asked or when inotify
// is unavailable (its limits reached, say).
func (r *Reloader) startWatching() {
	switch r.watch {
	case WatchOff:
		r.log.Info().Str(logkey.Watch, string(r.watch)).Msg("file watching off; reload with SIGHUP")
		return
	case WatchPoll:
		r.polling = true
		return
	}
	w, err := newWatcher()
	if err != nil {
		r.log.Warn().Err(err).Dur("interval", pollInterval).
			Msg("cannot watch policy files; polling them instead (SIGHUP still reloads)")
		r.polling = true
		return
	}
	r.watcher = w
	r.rewatch()
}

// rewatch watches the folders of r.files, and of the files their
// symbolic links lead to, and forgets folders no longer needed. Folders,
// not files, are watched: an editor's save by rename, a mv over the file,
// delete then create and a Kubernetes ..data swap all replace the file
// and would end a watch on it.
func (r *Reloader) rewatch() {
	if r.watcher == nil {
		return
	}
	want := map[string]map[string]bool{}
	add := func(path string) {
		dir, name := filepath.Split(path)
		dir = filepath.Clean(dir)
		if want[dir] == nil {
			want[dir] = map[string]bool{}
		}
		want[dir][name] = true
	}
	for _, f := range r.files {
		add(f)
		if real, err := filepath.EvalSymlinks(f); err == nil && real != f {
			add(real)
		}
	}
	for dir := range r.dirs {
		if want[dir] == nil {
			r.watcher.Remove(dir)
		}
	}
	for dir, names := range want {
		if r.dirs[dir] == nil {
			if err := r.watcher.Add(dir); err != nil {
				r.log.Warn().Err(err).Str("folder", dir).
					Msg("cannot watch folder; changes in it need SIGHUP")
				if errors.Is(err, errNoSpace) {
					r.polling = true
				}
				continue
			}
		}
		r.dirs[dir] = names
	}
	for dir := range r.dirs {
		if want[dir] == nil {
			delete(r.dirs, dir)
		}
	}
}

// matters reports whether ev may change the policy: an event on a file it
// names, or on a Kubernetes-style "..data" link or folder beside one.
func (r *Reloader) matters(ev fsnotify.Event) bool {
	if ev.Op == fsnotify.Chmod {
		return false
	}
	dir, name := filepath.Split(ev.Name)
	names := r.dirs[filepath.Clean(dir)]
	return names[name] || strings.HasPrefix(name, "..")
}

// stamps summarises the files' sizes and modification times, following
// links, for polling.
func stamps(files []string) string {
	var b strings.Builder
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			fmt.Fprintf(&b, "%s missing\n", f)
			continue
		}
		fmt.Fprintf(&b, "%s %d %d\n", f, fi.Size(), fi.ModTime().UnixNano())
	}
	return b.String()
}

// stoppedTimer returns a timer that has not started.
func stoppedTimer() *time.Timer {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return t
}

// LogDiagnostics logs each policy problem as its file:line:col line, at
// error or warn level by severity.
func LogDiagnostics(log zerolog.Logger, file string, diags hcl.Diagnostics) {
	for _, d := range diags {
		ev := log.Warn()
		if d.Severity == hcl.DiagError {
			ev = log.Error()
		}
		line := strings.TrimRight(policy.FormatDiagnostics(hcl.Diagnostics{d}), "\n")
		ev.Str(logkey.Policy, file).Msg(line)
	}
}
