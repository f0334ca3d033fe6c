package reload

import (
	"fmt"
	"os"
	"strings"
)

// stamps summarises the files' identities, sizes and modification times,
// following links, for polling.
func stamps(files []string) string {
	var b strings.Builder
	for _, f := range files {
		fmt.Fprintf(&b, "%s %s\n", f, stampOf(f))
	}
	return b.String()
}

// stampMap is stamps by file.
func stampMap(files []string) map[string]string {
	m := make(map[string]string, len(files))
	for _, f := range files {
		m[f] = stampOf(f)
	}
	return m
}

// stampOf describes what file is now. The identity catches a file or
// folder swapped for another of the same size and time (cp -p, a folder
// renamed into place).
func stampOf(file string) string {
	fi, err := os.Stat(file)
	if err != nil {
		return "missing"
	}
	return fmt.Sprintf("%v %d %d", idOf(file, fi), fi.Size(), fi.ModTime().UnixNano())
}
