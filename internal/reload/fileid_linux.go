package reload

import (
	"os"
	"syscall"
)

// fileID identifies a file or folder: its device and inode. Two paths
// with one ID are one folder (a link and its target); a path whose ID
// changed was replaced.
type fileID struct{ dev, ino uint64 }

// idOf returns the ID of the file at path that fi describes.
func idOf(_ string, fi os.FileInfo) fileID {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{}
	}
	return fileID{dev: uint64(st.Dev), ino: st.Ino}
}
