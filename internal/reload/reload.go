// Package reload keeps a running proxy.Server on the newest valid policy.
// It reloads on SIGHUP (Trigger), on changes to the policy file or any
// file it names (fsnotify on their folders, or polling where inotify is
// unavailable), builds the whole new policy first, and swaps it in only
// when every part of it loaded: a broken policy leaves the running one in
// place and logs why, with file:line:col.
package reload

import (
	"context"
	"fmt"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/rs/zerolog"

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
// a Secret update) settles for settleDelay before one reload. Files that
// are still being written when read wait for another settleDelay, for at
// most unsettledMax in all. A reload that fails right after a burst is
// retried once after retryDelay. Polling looks every pollInterval.
const (
	settleDelay  = 150 * time.Millisecond
	unsettledMax = 10 * time.Second
	retryDelay   = time.Second
	pollInterval = time.Second
)

// newWatcher is fsnotify.NewWatcher; tests replace it to fail.
var newWatcher = fsnotify.NewWatcher

// Reloader loads the policy at file into srv on every trigger. Run owns
// it once started; Trigger and Reload may be called from any goroutine.
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

	digest  [32]byte // of the policy srv runs
	running []string // files of the policy srv runs
	files   []string // named by the newest policy read, valid or not

	watcher *fsnotify.Watcher
	writers *writers             // files open for writing; nil if unknown
	watched map[string]*watchDir // by the path given to the watcher
	// unwatchable are the folders that could not be watched, and are
	// polled instead.
	unwatchable map[string]bool
	polling     bool
	stamps      string // files' identities, sizes and times at the last poll

	settle, retry *time.Timer
	// pending is the reload that waits for files to settle, if any;
	// unsettled is when it first found them changing.
	pending   *attempt
	unsettled time.Time
	// waiting are the Reload calls that the pending reload will answer.
	waiting []chan result

	// Test hooks: addWatch stands for watcher.Add, afterRead runs after
	// each read of the policy files.
	addWatch  func(dir string) error
	afterRead func()
}

// attempt is one reload to try: what triggered it, and whether it
// applies even a policy whose digest did not change.
type attempt struct {
	trigger string
	force   bool
}

// New returns a reloader for srv, which runs p, loaded from file. files
// are those LoadFiles returned with p.
func New(file string, srv *proxy.Server, p *policy.Policy, files []string,
	watch Watch, log zerolog.Logger) *Reloader {
	if p.File != "" {
		file = p.File
	}
	return &Reloader{
		file:        file,
		srv:         srv,
		log:         log,
		watch:       watch,
		hup:         make(chan struct{}, 1),
		reqs:        make(chan chan result),
		digest:      p.Digest,
		running:     files,
		files:       files,
		watched:     map[string]*watchDir{},
		unwatchable: map[string]bool{},
		settle:      stoppedTimer(),
		retry:       stoppedTimer(),
	}
}

// Trigger asks for a reload that applies even an unchanged policy, as
// SIGHUP does. Triggers that arrive during a reload give one more reload
// after it, which reads the files afresh.
func (r *Reloader) Trigger() {
	select {
	case r.hup <- struct{}{}:
	default: // one is pending already; it has not read the files yet
	}
}

// result is what a reload asked for by Reload came to.
type result struct {
	gen uint64
	err error
}

// Reload reloads at once, like Trigger, and returns the generation now
// running or why the reload was rejected. Files still being written are
// waited for first. Run must be running.
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
	defer r.stopWatching()
	// The ticker runs in every mode: polling may start later, when a
	// folder cannot be watched.
	poll := time.NewTicker(pollInterval)
	defer poll.Stop()
	r.stamps = stamps(r.watchedFiles())
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
			r.try(attempt{"signal", true}, false)
		case reply := <-r.reqs:
			r.waiting = append(r.waiting, reply)
			r.try(attempt{"request", true}, false)
		case ev := <-events:
			if r.matters(ev) {
				r.settle.Reset(settleDelay)
			}
		case err := <-errs:
			// An overflow loses events: reload to be sure.
			r.log.Warn().Err(err).Msg("file watch error; reloading to be sure")
			r.settle.Reset(settleDelay)
		case <-r.settle.C:
			r.try(attempt{"file", false}, true)
		case <-r.retry.C:
			r.try(attempt{"file", false}, false)
		case <-poll.C:
			r.poll()
		}
	}
}

// poll reloads when polling is on and the files look different.
func (r *Reloader) poll() {
	if !r.polling {
		return
	}
	if s := stamps(r.watchedFiles()); s != r.stamps {
		r.stamps = s
		r.try(attempt{"poll", false}, false)
	}
}

// catchUp reloads once if the files changed between the first load and
// the start of watching: no event or stamp would ever show that change.
func (r *Reloader) catchUp() {
	switch {
	case r.watch == WatchOff:
	case r.polling:
		r.try(attempt{"poll", false}, false)
	default:
		r.try(attempt{"file", false}, false)
	}
}

// stoppedTimer returns a timer that has not started.
func stoppedTimer() *time.Timer {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return t
}
