package smallfile

import (
	"bytes"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestRead reads every kind of file: regular ones come back whole,
// special ones and oversized ones are refused with an error that names
// them, and a named pipe does not block the read.
func TestRead(t *testing.T) {
	dir := t.TempDir()
	at := func(name string) string { return filepath.Join(dir, name) }
	write(t, at("policy.hcl"), "inbound {}\n")
	write(t, at("empty.hcl"), "")
	symlink(t, at("policy.hcl"), at("link.hcl"))
	symlink(t, "/dev/zero", at("zero.pem"))
	if err := syscall.Mkfifo(at("fifo.hcl"), 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("unix", at("sock"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	sparse(t, at("largest.pem"), MaxSize)
	sparse(t, at("huge.pem"), MaxSize+1)

	tests := []struct {
		name    string
		path    string
		want    string // the contents, when wantErr is nil
		wantLen int
		wantErr error
		wantMsg string
	}{
		{"regular", at("policy.hcl"), "inbound {}\n", 11, nil, ""},
		{"empty", at("empty.hcl"), "", 0, nil, ""},
		{"symlink to regular", at("link.hcl"), "inbound {}\n", 11, nil, ""},
		{"largest", at("largest.pem"), "", MaxSize, nil, ""},
		{"missing", at("nope.hcl"), "", 0, fs.ErrNotExist, "open " + at("nope.hcl")},
		{"named pipe", at("fifo.hcl"), "", 0, ErrNotRegular, "is a named pipe, not a regular file"},
		{"character device", "/dev/zero", "", 0, ErrNotRegular, `"/dev/zero" is a character device`},
		{"symlink to device", at("zero.pem"), "", 0, ErrNotRegular, "is a character device"},
		{"folder", dir, "", 0, ErrNotRegular, "is a folder"},
		{"socket", at("sock"), "", 0, ErrNotRegular, "is a socket"},
		{"too large", at("huge.pem"), "", 0, ErrTooLarge, "is larger than 4 MiB"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := readBounded(t, tt.path)
			if !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
				t.Fatalf("got error %v, want %v", err, tt.wantErr)
			}
			if err != nil && !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("got error %q, want it to hold %q", err, tt.wantMsg)
			}
			if len(got) != tt.wantLen || tt.want != "" && string(got) != tt.want {
				t.Errorf("got %d bytes %.20q, want %d bytes %q", len(got), got, tt.wantLen, tt.want)
			}
		})
	}
}

// readBounded runs Read, waiting at most 10 s: a Read that blocks fails
// the test instead of hanging it.
func readBounded(t *testing.T, path string) ([]byte, error) {
	t.Helper()
	type result struct {
		b   []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		b, err := Read(path)
		done <- result{b, err}
	}()
	select {
	case r := <-done:
		return r.b, r.err
	case <-time.After(10 * time.Second):
		t.Fatalf("Read(%q) still blocked after 10s", path)
		return nil, nil
	}
}

// TestReadAllGrowth reads a file that grew after its size was taken: up
// to MaxSize it is read whole, beyond it is refused.
func TestReadAllGrowth(t *testing.T) {
	tests := []struct {
		name    string
		size    int64 // what Stat said
		actual  int   // what the file holds by the time it is read
		wantErr error
	}{
		{"as stated", 10, 10, nil},
		{"grew a little", 3, 10, nil},
		{"grew to the limit", 1, MaxSize, nil},
		{"grew past the limit", 1, MaxSize + 1, ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := bytes.Repeat([]byte{'x'}, tt.actual)
			got, err := readAll(bytes.NewReader(data), "f", tt.size)
			if !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
				t.Fatalf("got error %v, want %v", err, tt.wantErr)
			}
			if err == nil && !bytes.Equal(got, data) {
				t.Errorf("got %d bytes, want the %d written", len(got), len(data))
			}
		})
	}
}

// TestGrowWipes: the buffer that grow replaces is all zeros after.
func TestGrowWipes(t *testing.T) {
	old := []byte("-----BEGIN PRIVATE KEY-----")
	bigger := grow(old)
	if string(bigger) != "-----BEGIN PRIVATE KEY-----" || cap(bigger) < 2*len(old) {
		t.Errorf("got %q with capacity %d, want the key with at least %d", bigger,
			cap(bigger), 2*len(old))
	}
	if !bytes.Equal(old, make([]byte, len(old))) {
		t.Errorf("old buffer: got %q, want zeros", old)
	}
}

func write(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}

func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

// sparse makes a file of size bytes that takes no disk space.
func sparse(t *testing.T, path string, size int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
}
