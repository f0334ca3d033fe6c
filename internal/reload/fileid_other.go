//go:build !linux

package reload

import "os"

// fileID would identify a file by device and inode; here its path does.
type fileID struct{ path string }

// idOf returns the ID of the file at path.
func idOf(path string, _ os.FileInfo) fileID { return fileID{path: path} }
