package reload

import (
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/fsnotify/fsnotify"

	"github.com/attlsd/attlsd/internal/logkey"
)

// watchDir is a watched folder and the names in it whose events matter.
type watchDir struct {
	id    fileID
	names map[string]bool
	// files is true when the folder holds files the policy names, not
	// only folders on the way to them.
	files bool
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
		r.log.Warn().Err(err).Dur(logkey.Interval, pollInterval).
			Msg("cannot watch policy files; polling them instead (SIGHUP still reloads)")
		r.polling = true
		return
	}
	r.watcher = w
	if r.addWatch == nil {
		r.addWatch = w.Add
	}
	r.writers = openWriters(r.log)
	r.rewatch(r.watchedFiles())
}

// stopWatching ends what startWatching set up.
func (r *Reloader) stopWatching() {
	if r.watcher != nil {
		r.watcher.Close()
	}
	r.writers.close()
}

// rewatch watches the folders where changes to files show (see
// wantedDirs) and forgets those no longer needed. Folders, not files, are
// watched: an editor's save by rename, a mv over the file, delete then
// create and a Kubernetes ..data swap all replace the file and would end
// a watch on it. A folder that was deleted, moved away or replaced (a
// folder link switched to another target) is watched afresh.
func (r *Reloader) rewatch(files []string) {
	if r.watcher == nil {
		return
	}
	want := wantedDirs(files)
	live := map[string]bool{}
	for _, p := range r.watcher.WatchList() {
		live[p] = true
	}
	changed := false
	for path, w := range r.watched {
		if nw := want[path]; nw == nil || nw.id != w.id || !live[path] {
			r.unwatch(path)
			changed = true
		}
	}
	for path, w := range want {
		if r.watched[path] == nil {
			if !r.watchDir(path) {
				continue
			}
			changed = true
		}
		r.watched[path] = w
		r.writers.add(path, w.names)
	}
	if changed {
		r.log.Debug().Strs(logkey.Folders, slices.Sorted(maps.Keys(r.watched))).
			Msg("watching policy folders")
	}
}

// watchDir starts watching path, or polling if it cannot be watched:
// the inotify watch limit reached (ENOSPC), no permission, or the folder
// gone again. It says so once per folder, and tries again at the next
// reload.
func (r *Reloader) watchDir(path string) bool {
	err := r.addWatch(path)
	if err == nil {
		delete(r.unwatchable, path)
		return true
	}
	r.polling = true
	if !r.unwatchable[path] {
		msg := "cannot watch folder; polling the policy files instead"
		if errors.Is(err, errNoSpace) {
			msg = "cannot watch folder: inotify watch limit reached; polling the policy files instead"
		}
		r.log.Warn().Err(err).Str(logkey.Folder, path).Dur(logkey.Interval, pollInterval).Msg(msg)
		r.unwatchable[path] = true
	}
	return false
}

// unwatch stops watching path. The watch may be gone already, with the
// folder.
func (r *Reloader) unwatch(path string) {
	r.watcher.Remove(path)
	r.writers.remove(path)
	delete(r.watched, path)
}

// wantedDirs returns the folders to watch for files, by watch path, each
// with the names in it that matter: every file in its folder, the folder
// in its parent (a folder swapped by rename), every symbolic link on the
// way in its folder (a release link switched), and the same for the file
// the links lead to. A folder that does not exist yet is stood in for by
// its nearest existing parent, watched for the next name on the way.
// Paths that are one folder, such as a link and its target, are watched
// once, under the first of them in order.
func wantedDirs(files []string) map[string]*watchDir {
	var pts []point
	for _, f := range files {
		pts = append(pts, points(f)...)
	}
	slices.SortFunc(pts, func(a, b point) int { return strings.Compare(a.dir, b.dir) })
	byID := map[fileID]*watchDir{}
	out := map[string]*watchDir{}
	for _, pt := range pts {
		dir, name, fi, climbed := existing(pt)
		if fi == nil {
			continue
		}
		id := idOf(dir, fi)
		w := byID[id]
		if w == nil {
			w = &watchDir{id: id, names: map[string]bool{}}
			byID[id], out[dir] = w, w
		}
		w.names[name] = true
		w.files = w.files || pt.file && !climbed
	}
	return out
}

// point is a name in a folder whose events may change the policy.
type point struct {
	dir, name string
	file      bool // name is a file the policy names, or its link target
}

// points lists where a change to file shows (see wantedDirs).
func points(file string) []point {
	var out []point
	for _, f := range []string{file, realPath(file)} {
		out = append(out, point{filepath.Dir(f), filepath.Base(f), true})
		for p := filepath.Dir(f); p != filepath.Dir(p); p = filepath.Dir(p) {
			if p == filepath.Dir(f) || isLink(p) {
				out = append(out, point{dir: filepath.Dir(p), name: filepath.Base(p)})
			}
		}
	}
	return out
}

// realPath returns file with every symbolic link resolved, as far as
// they resolve: a file that does not exist yet may be in a linked folder.
func realPath(file string) string {
	if real, err := filepath.EvalSymlinks(file); err == nil {
		return real
	}
	if dir, err := filepath.EvalSymlinks(filepath.Dir(file)); err == nil {
		return filepath.Join(dir, filepath.Base(file))
	}
	return file
}

func isLink(path string) bool {
	fi, err := os.Lstat(path)
	return err == nil && fi.Mode()&os.ModeSymlink != 0
}

// existing returns the nearest folder of pt that exists, the name in it
// on the way to pt, and whether it had to climb; fi is nil when nothing
// on the way exists.
func existing(pt point) (dir, name string, fi os.FileInfo, climbed bool) {
	dir, name = pt.dir, pt.name
	for {
		fi, err := os.Stat(dir)
		if err == nil && fi.IsDir() {
			return dir, name, fi, climbed
		}
		if filepath.Dir(dir) == dir {
			return "", "", nil, climbed
		}
		dir, name, climbed = filepath.Dir(dir), filepath.Base(dir), true
	}
}

// matters reports whether ev may change the policy: an event on a name
// that matters in its folder (see wantedDirs), on a Kubernetes-style
// "..data" link or folder beside a named file, or on a watched folder
// itself, which was deleted or moved away.
func (r *Reloader) matters(ev fsnotify.Event) bool {
	if ev.Op == fsnotify.Chmod {
		return false
	}
	if r.watched[ev.Name] != nil {
		return true
	}
	dir, name := filepath.Split(ev.Name)
	w := r.watched[filepath.Clean(dir)]
	if w == nil {
		return false
	}
	return w.names[name] || w.files && strings.HasPrefix(name, "..")
}
