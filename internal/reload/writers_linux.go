package reload

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// writers knows which files in the watched folders were changed and are
// still open for writing: inotify reports IN_MODIFY for a write and
// IN_CLOSE_WRITE when the writer closes the file. A file caught between
// the two may be a valid prefix of what is being written (a policy cut at
// a block boundary, a chain without its intermediate, a trust bundle
// short of a CA), so it is not loaded yet. fsnotify does not export
// IN_CLOSE_WRITE, hence this second inotify instance for these events
// alone. A nil *writers knows nothing and holds no file back.
type writers struct {
	fd   int
	file *os.File // fd, so that Close ends a pending read
	done chan struct{}

	mu    sync.Mutex
	wds   map[string]int          // by watched path
	dirs  map[int]fileID          // watched folder by watch descriptor
	names map[int]map[string]bool // the names that matter, by watch descriptor
	open  map[entry]bool          // changed and not closed yet
}

// entry is a name in a folder.
type entry struct {
	dir  fileID
	name string
}

// writerEvents are the events writers asks for: a write, its end, and
// the name taken over by another file.
const writerEvents = unix.IN_MODIFY | unix.IN_CLOSE_WRITE | unix.IN_MOVED_FROM |
	unix.IN_MOVED_TO | unix.IN_DELETE | unix.IN_ONLYDIR

// openWriters starts a writers, or returns nil when inotify cannot give
// one: files are then read once their events settle.
func openWriters(log zerolog.Logger) *writers {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		log.Debug().Err(err).Msg("cannot tell files still open for writing; " +
			"reading them once their events settle")
		return nil
	}
	w := &writers{fd: fd, file: os.NewFile(uintptr(fd), "inotify"),
		done: make(chan struct{}), wds: map[string]int{}, dirs: map[int]fileID{},
		names: map[int]map[string]bool{}, open: map[entry]bool{}}
	go w.read()
	return w
}

// read takes events until close.
func (w *writers) read() {
	defer close(w.done)
	// Room for many events; one takes at most 16 bytes and NAME_MAX+1.
	buf := make([]byte, 64<<10)
	for {
		n, err := w.file.Read(buf)
		if err != nil {
			return
		}
		w.handle(buf[:n])
	}
}

// handle notes each event in b: struct inotify_event, then its name
// padded with NULs (inotify(7)).
func (w *writers) handle(b []byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for len(b) >= unix.SizeofInotifyEvent {
		wd := int(int32(binary.NativeEndian.Uint32(b[0:])))
		mask := binary.NativeEndian.Uint32(b[4:])
		end := unix.SizeofInotifyEvent + int(binary.NativeEndian.Uint32(b[12:]))
		if end > len(b) {
			return
		}
		w.note(wd, mask, strings.TrimRight(string(b[unix.SizeofInotifyEvent:end]), "\x00"))
		b = b[end:]
	}
}

// note records one event. After an overflow nothing is known, and
// nothing is held back.
func (w *writers) note(wd int, mask uint32, name string) {
	dir, ok := w.dirs[wd]
	switch {
	case mask&unix.IN_Q_OVERFLOW != 0:
		clear(w.open)
	case !ok:
	case mask&unix.IN_IGNORED != 0:
		w.forget(wd)
	case mask&unix.IN_MODIFY != 0 && w.names[wd][name]:
		w.open[entry{dir, name}] = true
	default:
		delete(w.open, entry{dir, name})
	}
}

// forget drops the watch wd and what it noted.
func (w *writers) forget(wd int) {
	dir := w.dirs[wd]
	delete(w.dirs, wd)
	delete(w.names, wd)
	for e := range w.open {
		if e.dir == dir {
			delete(w.open, e)
		}
	}
}

// add watches the folder at path for writes to names, or updates the
// names of a folder it watches. A folder it cannot watch is read once its
// events settle.
func (w *writers) add(path string, names map[string]bool) {
	if w == nil || w.update(path, names) {
		return
	}
	fi, err := os.Stat(path)
	if err != nil {
		return
	}
	wd, err := unix.InotifyAddWatch(w.fd, path, writerEvents)
	if err != nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.wds[path], w.dirs[wd], w.names[wd] = wd, idOf(path, fi), names
}

// update gives the folder at path names, and reports whether it is
// watched.
func (w *writers) update(path string, names map[string]bool) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	wd, ok := w.wds[path]
	if ok {
		w.names[wd] = names
	}
	return ok
}

// remove stops watching the folder at path.
func (w *writers) remove(path string) {
	if w == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	wd, ok := w.wds[path]
	if !ok {
		return
	}
	unix.InotifyRmWatch(w.fd, uint32(wd)) // fails if the folder went first
	delete(w.wds, path)
	w.forget(wd)
}

// busy reports whether any of files, or a file its links lead to, was
// changed and is still open for writing.
func (w *writers) busy(files []string) bool {
	if w == nil {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.open) == 0 {
		return false
	}
	for _, f := range files {
		for _, p := range []string{f, realPath(f)} {
			fi, err := os.Stat(filepath.Dir(p))
			if err == nil && w.open[entry{idOf(p, fi), filepath.Base(p)}] {
				return true
			}
		}
	}
	return false
}

// close ends the watches and waits for read to return.
func (w *writers) close() {
	if w == nil {
		return
	}
	w.file.Close()
	<-w.done
}
