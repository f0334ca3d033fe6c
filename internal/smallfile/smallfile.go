// Package smallfile reads the files that configure attlsd: the policy and
// the certificates, keys and trust bundles it names. It refuses what
// would hang a read or exhaust memory: named pipes, devices, sockets,
// folders, and files larger than MaxSize.
package smallfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
)

// MaxSize is the largest file Read returns: far above any policy or PEM
// file (a system CA bundle is about 200 KiB).
const MaxSize = 4 << 20

// Errors that Read's error wraps, for errors.Is.
var (
	ErrNotRegular = errors.New("not a regular file")
	ErrTooLarge   = errors.New("larger than 4 MiB, the limit for a policy, " +
		"certificate, key or trust file")
)

// Read returns the contents of the regular file at path, following
// symbolic links. A missing or unreadable file gives os.Open's error.
//
// The buffers Read fills and lets go are wiped, as are those of a failed
// read, since the file may hold a private key (see certs).
func Read(path string) ([]byte, error) {
	// Refused before it is opened: opening a device may have effects of
	// its own, and a named pipe would wait for a writer.
	if fi, err := os.Stat(path); err == nil && !fi.Mode().IsRegular() {
		return nil, notRegular(path, fi.Mode())
	}
	// O_NONBLOCK: should path turn into a named pipe after the Stat, the
	// open returns at once instead of waiting for a writer; on a regular
	// file it changes nothing.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	switch {
	case err != nil:
		return nil, err
	case !fi.Mode().IsRegular():
		return nil, notRegular(path, fi.Mode())
	case fi.Size() > MaxSize:
		return nil, fmt.Errorf("%q is %w", path, ErrTooLarge)
	}
	return readAll(f, path, fi.Size())
}

// readAll reads r to its end into a buffer of size+1 bytes, which the
// file fills exactly when it did not grow since its size was taken. It
// grows the buffer up to MaxSize+1 bytes if needed, wiping each one it
// replaces.
func readAll(r io.Reader, path string, size int64) ([]byte, error) {
	buf := make([]byte, 0, size+1)
	for {
		if len(buf) == cap(buf) {
			if len(buf) > MaxSize {
				clear(buf)
				return nil, fmt.Errorf("%q is %w", path, ErrTooLarge)
			}
			buf = grow(buf)
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if errors.Is(err, io.EOF) {
			return buf, nil
		}
		if err != nil {
			clear(buf)
			return nil, &fs.PathError{Op: "read", Path: path, Err: err}
		}
	}
}

// grow returns buf copied into one of twice its capacity, at most
// MaxSize+1, and wipes buf.
func grow(buf []byte) []byte {
	bigger := make([]byte, len(buf), min(2*cap(buf), MaxSize+1))
	copy(bigger, buf)
	clear(buf)
	return bigger
}

// notRegular is Read's error for a file of mode m.
func notRegular(path string, m fs.FileMode) error {
	return fmt.Errorf("%q is %s, %w", path, kind(m), ErrNotRegular)
}

// kind names the type of a file that is not regular.
func kind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a folder"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	}
	return "a special file"
}
