package reload

import (
	"slices"

	"github.com/hashicorp/hcl/v2"

	"github.com/attlsd/attlsd/policy"
)

// load reads the policy and the files it names. Their folders are
// watched before they are read, so that a change during or after the
// read gives an event; a policy that names files not watched yet is read
// once more with them watched. settled is false when a file changed while
// it was read or is still open for writing after a change: what was read
// may be a valid prefix of what is being written.
func (r *Reloader) load() (p *policy.Policy, diags hcl.Diagnostics, settled bool) {
	for try := 0; ; try++ {
		watched := r.watchedFiles()
		r.rewatch(watched)
		before := stampMap(watched)
		var files []string
		p, files, diags = policy.LoadFiles(r.file)
		if r.afterRead != nil {
			r.afterRead()
		}
		r.files = files
		known := covers(before, files)
		if !known && try < 2 {
			continue
		}
		return p, diags, known && unchanged(before, files) && !r.writers.busy(files)
	}
}

// watchedFiles returns the files of the running policy and of the newest
// policy read: while a broken policy waits to be fixed, the running one's
// certificates are still watched.
func (r *Reloader) watchedFiles() []string {
	out := slices.Clone(r.running)
	for _, f := range r.files {
		if !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	return out
}

// covers reports whether stamps were taken of every file.
func covers(stamps map[string]string, files []string) bool {
	for _, f := range files {
		if _, ok := stamps[f]; !ok {
			return false
		}
	}
	return true
}

// unchanged reports whether files still look as they did when stamped.
func unchanged(stamps map[string]string, files []string) bool {
	for _, f := range files {
		if stampOf(f) != stamps[f] {
			return false
		}
	}
	return true
}
