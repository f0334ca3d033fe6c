package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
)

// The backend speaks a one-line protocol after an optional PROXY header
// (v1 or v2, as each proxy sends it):
//
//	up N     the client sends N bytes; the backend answers "ok N\n"
//	down N   the backend sends N bytes and closes
//	echo     the backend echoes every byte until end of stream
func backendCmd(args []string) error {
	fs := flag.NewFlagSet("backend", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:9000", "address to listen on")
	fs.Parse(args)
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	fmt.Println("listening", ln.Addr())
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go serveBackend(c)
	}
}

func serveBackend(c net.Conn) {
	defer c.Close()
	r := bufio.NewReaderSize(c, 64<<10)
	if err := skipProxyHeader(r); err != nil {
		return
	}
	line, err := r.ReadString('\n')
	if err != nil {
		return
	}
	cmd, arg, _ := strings.Cut(strings.TrimSpace(line), " ")
	n, _ := strconv.ParseInt(arg, 10, 64)
	switch cmd {
	case "up":
		got, _ := io.CopyN(io.Discard, r, n)
		fmt.Fprintf(c, "ok %d\n", got)
	case "down":
		sendN(c, n)
	case "echo":
		io.Copy(c, r)
	}
}

var v2sig = []byte("\r\n\r\n\x00\r\nQUIT\n")

// skipProxyHeader consumes a PROXY v1 or v2 header if one is there.
func skipProxyHeader(r *bufio.Reader) error {
	head, err := r.Peek(5)
	if err != nil {
		return err
	}
	switch {
	case bytes.Equal(head, []byte("PROXY")):
		_, err = r.ReadString('\n')
		return err
	case bytes.Equal(head, v2sig[:5]):
		fixed := make([]byte, 16)
		if _, err := io.ReadFull(r, fixed); err != nil {
			return err
		}
		if !bytes.Equal(fixed[:12], v2sig) {
			return errors.New("bad PROXY v2 signature")
		}
		_, err = r.Discard(int(binary.BigEndian.Uint16(fixed[14:])))
		return err
	}
	return nil
}

// block is what the backend and the clients send: 64 KiB of a fixed
// pattern, written again and again so that producing bytes costs nothing.
var block = func() []byte {
	b := make([]byte, 64<<10)
	for i := range b {
		b[i] = byte(i * 7)
	}
	return b
}()

// sendN writes n bytes of block to w.
func sendN(w io.Writer, n int64) error {
	for n > 0 {
		chunk := block
		if n < int64(len(chunk)) {
			chunk = chunk[:n]
		}
		m, err := w.Write(chunk)
		n -= int64(m)
		if err != nil {
			return err
		}
	}
	return nil
}
