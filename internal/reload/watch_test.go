package reload

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// msgUnchanged is the line of a look at the files that found nothing new.
const msgUnchanged = "policy files unchanged; nothing to reload"

// must fails the test on err.
func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// linkFolder moves dir/certs to dir/to and leaves a link from, relative
// to its folder, to it.
func linkFolder(t *testing.T, dir, from, to string) {
	t.Helper()
	must(t, os.MkdirAll(filepath.Dir(filepath.Join(dir, to)), 0o755))
	must(t, os.Rename(filepath.Join(dir, "certs"), filepath.Join(dir, to)))
	rel, err := filepath.Rel(filepath.Dir(filepath.Join(dir, from)), filepath.Join(dir, to))
	must(t, err)
	must(t, os.Symlink(rel, filepath.Join(dir, from)))
}

// switchLink points the link dir/name at target with a new link renamed
// over it, as release tools do (ln -s target tmp; mv -T tmp name).
func switchLink(t *testing.T, dir, name, target string) {
	t.Helper()
	tmp := filepath.Join(dir, name+".tmp")
	must(t, os.Symlink(target, tmp))
	must(t, os.Rename(tmp, filepath.Join(dir, name)))
}

// TestWatchFolderReplaced replaces the folder holding the certificate in
// the ways a whole folder gets replaced, then rewrites the certificate in
// place in the new folder: clients see both new certificates, so the
// watch followed the folder. The folder is tls/certs, in a folder that
// holds no file the policy names, so only a watch on tls sees it go.
func TestWatchFolderReplaced(t *testing.T) {
	moveToTLS := func(t *testing.T, dir string) {
		must(t, os.Mkdir(filepath.Join(dir, "tls"), 0o755))
		must(t, os.Rename(filepath.Join(dir, "certs"), filepath.Join(dir, "tls/certs")))
	}
	tests := []struct {
		name    string
		certDir string
		layout  func(t *testing.T, dir string)
		replace func(t *testing.T, f *fixture, p pair)
	}{
		{"deleted and made again", "tls/certs", moveToTLS,
			func(t *testing.T, f *fixture, p pair) {
				must(t, os.RemoveAll(filepath.Join(f.dir, "tls/certs")))
				p.write(t, filepath.Join(f.dir, "tls/certs"))
			}},
		{"deleted, made again after a rejected reload", "tls/certs", moveToTLS,
			func(t *testing.T, f *fixture, p pair) {
				must(t, os.RemoveAll(filepath.Join(f.dir, "tls/certs")))
				f.waitRejected(t, 2) // and its retry: only a watch can tell now
				p.write(t, filepath.Join(f.dir, "tls/certs"))
			}},
		{"its parent deleted, made again after a rejected reload", "tls/certs", moveToTLS,
			func(t *testing.T, f *fixture, p pair) {
				must(t, os.RemoveAll(filepath.Join(f.dir, "tls")))
				f.waitRejected(t, 2)
				must(t, os.Mkdir(filepath.Join(f.dir, "tls"), 0o755))
				p.write(t, filepath.Join(f.dir, "tls/certs"))
			}},
		{"swapped by rename", "tls/certs", moveToTLS, func(t *testing.T, f *fixture, p pair) {
			p.write(t, filepath.Join(f.dir, "tls/certs.new"))
			must(t, os.Rename(filepath.Join(f.dir, "tls/certs"), filepath.Join(f.dir, "tls/certs.old")))
			must(t, os.Rename(filepath.Join(f.dir, "tls/certs.new"), filepath.Join(f.dir, "tls/certs")))
		}},
		{"link switched with ln -sfn", "tls/certs",
			func(t *testing.T, dir string) { linkFolder(t, dir, "tls/certs", "tls/certs.v1") },
			func(t *testing.T, f *fixture, p pair) {
				p.write(t, filepath.Join(f.dir, "tls/certs.v2"))
				cmd := exec.Command("ln", "-sfn", "certs.v2", "certs")
				cmd.Dir = filepath.Join(f.dir, "tls")
				if out, err := cmd.CombinedOutput(); err != nil {
					t.Fatalf("ln -sfn: %v: %s", err, out)
				}
			}},
		{"link renamed over", "tls/certs",
			func(t *testing.T, dir string) { linkFolder(t, dir, "tls/certs", "tls/certs.v1") },
			func(t *testing.T, f *fixture, p pair) {
				p.write(t, filepath.Join(f.dir, "tls/certs.v2"))
				switchLink(t, filepath.Join(f.dir, "tls"), "certs", "certs.v2")
			}},
		{"release link higher up", "current/certs",
			func(t *testing.T, dir string) {
				must(t, os.MkdirAll(filepath.Join(dir, "releases/v1"), 0o755))
				must(t, os.Rename(filepath.Join(dir, "certs"), filepath.Join(dir, "releases/v1/certs")))
				must(t, os.Symlink("releases/v1", filepath.Join(dir, "current")))
			},
			func(t *testing.T, f *fixture, p pair) {
				p.write(t, filepath.Join(f.dir, "releases/v2/certs"))
				switchLink(t, f.dir, "current", "releases/v2")
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := startIn(t, WatchAuto, tt.certDir, tt.layout)
			p := newPair(t)
			tt.replace(t, f, p)
			f.waitSerial(t, p)

			q := newPair(t)
			q.writeInPlace(t, filepath.Join(f.dir, tt.certDir))
			f.waitSerial(t, q)
		})
	}
}

// TestWatchAddFails: a folder that cannot be watched (the inotify watch
// limit reached, or any other refusal) is polled, with a warning, and a
// rotated certificate still reaches clients.
func TestWatchAddFails(t *testing.T) {
	tests := []struct {
		name string
		err  error
		warn string
	}{
		{"watch limit", syscall.ENOSPC,
			"cannot watch folder: inotify watch limit reached; polling the policy files instead"},
		{"permission", syscall.EACCES, "cannot watch folder; polling the policy files instead"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := start(t, WatchAuto, func(f *fixture) {
				f.r.addWatch = func(string) error { return tt.err }
			})
			p := newPair(t)
			p.writeInPlace(t, filepath.Join(f.dir, "certs"))
			f.waitSerial(t, p)
			if n := f.log.count(tt.warn); n == 0 {
				t.Errorf("warning %q: got none; log:\n%s", tt.warn, f.log)
			}
		})
	}
}

// lastWatched returns the folders of the last "watching policy folders"
// line.
func (l *logBuffer) lastWatched() []string {
	var out []string
	for _, line := range strings.Split(l.String(), "\n") {
		var m struct {
			Message string   `json:"message"`
			Folders []string `json:"folders"`
		}
		if json.Unmarshal([]byte(line), &m) == nil && m.Message == "watching policy folders" {
			out = m.Folders
		}
	}
	return out
}

// TestWatchKeepsRunningFiles: while a broken policy waits to be fixed,
// the running policy's certificate folder stays watched.
func TestWatchKeepsRunningFiles(t *testing.T) {
	f := start(t, WatchAuto)
	certs := filepath.Join(f.dir, "certs")
	if got := f.log.lastWatched(); !slices.Contains(got, certs) {
		t.Fatalf("watched at start: got %v, want %s among them", got, certs)
	}
	f.write(t, "environment {")
	f.waitRejected(t, 2) // and its retry, which watches what the broken policy names

	if got := f.log.lastWatched(); !slices.Contains(got, certs) {
		t.Errorf("watched after a syntax error: got %v, want %s among them", got, certs)
	}
}

// TestWatchBeforeRead: a policy that names a folder not watched yet, whose
// certificate is rotated just after the policy was read, ends up serving
// the rotated certificate: the folder is watched before the files that
// count are read.
func TestWatchBeforeRead(t *testing.T) {
	first, rotated := newPair(t), newPair(t)
	var once sync.Once
	f := start(t, WatchAuto, func(f *fixture) {
		first.write(t, filepath.Join(f.dir, "certs2"))
		f.r.afterRead = func() {
			if !slices.Contains(f.r.files, filepath.Join(f.dir, "certs2", "server.pem")) {
				return
			}
			once.Do(func() {
				for name, b := range map[string][]byte{"server.pem": rotated.cert,
					"server-key.pem": rotated.key} {
					if err := os.WriteFile(filepath.Join(f.dir, "certs2", name), b, 0o600); err != nil {
						t.Error(err)
					}
				}
			})
		}
	})
	f.write(t, f.policy("certs2", f.one))
	f.waitSerial(t, rotated)
}
