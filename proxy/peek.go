package proxy

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"
)

// recordHeaderLen is the size of a TLS record header: content type,
// legacy version and length (RFC 8446 5.1).
const recordHeaderLen = 5

// firstBytesWait bounds how long an outbound connection waits for the
// app's first byte before dialling the endpoint. An app whose protocol
// speaks first (HTTP and most others) has written by then, so its bytes
// are judged before attlsd contacts anyone; an app whose server speaks
// first (SMTP, FTP, SSH) says nothing until it hears the greeting, so
// attlsd dials once the wait is over and the relay judges the app's
// first bytes whenever they come. A client-first app loses no time; a
// server-first app's greeting comes this much later.
const firstBytesWait = 200 * time.Millisecond

// helloCheck spots an app that speaks TLS itself into an outbound rule
// (TLS inside TLS, a known AT-TLS misconfiguration: the endpoint would
// get a ClientHello wrapped in attlsd's TLS and answer nothing useful).
// It holds the app's first bytes back until they show whether they begin
// a TLS record, however the app splits its writes, for at most wait: a
// TLS client writes its whole ClientHello at once, so bytes that stop
// short of a record header for that long are cleartext.
//
// The bytes go into a fixed array, so judging allocates nothing. It
// judges before the dial (peek) and, for an app that had not said enough
// by then, inside the relay (inspect); one goroutine uses it at a time.
type helloCheck struct {
	hdr     [recordHeaderLen]byte
	n       int   // bytes of hdr seen
	decided bool  // hdr[:n] decides, or the stream ended
	refused error // the refusal of an app that speaks TLS, or nil
	// wait bounds how long bytes that could begin a record are held for
	// the rest of its header (the environment's handshake timeout).
	wait time.Duration
}

// peek reads and judges the app's first bytes before attlsd dials, so
// that an app speaking TLS is refused without reaching the endpoint and
// without the rule's client certificate being shown to it. It waits up
// to firstBytesWait for a first byte, then, while the bytes could still
// begin a TLS record, up to wait for the rest of the header: bytes that
// stop short of a header for that long come from no TLS client, which
// writes its ClientHello at once, so they are passed on. It returns the
// refusal, or nil: then passed() holds what was read.
func (h *helloCheck) peek(c net.Conn, wait time.Duration) error {
	h.wait = wait
	start := time.Now()
	defer c.SetReadDeadline(time.Time{})
	for !h.decided {
		limit := firstBytesWait
		if h.n > 0 {
			limit = max(wait, firstBytesWait)
		}
		c.SetReadDeadline(start.Add(limit))
		k, err := c.Read(h.hdr[h.n:])
		h.judge(h.hdr[h.n:h.n+k], errors.Is(err, io.EOF))
		switch {
		case h.decided:
		case errors.Is(err, os.ErrDeadlineExceeded) && h.n > 0:
			h.expire()
		case errors.Is(err, os.ErrDeadlineExceeded):
			return nil // silent so far: inspect goes on in the relay
		case err != nil:
			return fmt.Errorf("read from app: %w", err)
		}
	}
	return h.refused
}

// passed returns the bytes peek read and judged to be no ClientHello,
// which go to the endpoint first; nil while undecided.
func (h *helloCheck) passed() []byte {
	if !h.decided || h.refused != nil {
		return nil
	}
	return h.hdr[:h.n]
}

// inspect is the relay's hook on the app's side (side.hello): it
// judges data, the next bytes read, with those it holds. Undecided, it
// keeps data (then fewer than a header's bytes) and has it held back;
// decided, it returns the bytes it held, to go before data.
func (h *helloCheck) inspect(data []byte) (held []byte, wait bool, err error) {
	old := h.n
	k := min(len(data), recordHeaderLen-h.n)
	copy(h.hdr[h.n:], data[:k])
	h.judge(h.hdr[h.n:h.n+k], data == nil)
	switch {
	case h.refused != nil:
		return nil, false, h.refused
	case !h.decided:
		return nil, true, nil
	}
	return h.hdr[:old], false, nil
}

// expire gives up waiting for the rest of a header: the bytes held for
// wait come from no TLS client, and are returned to be forwarded.
func (h *helloCheck) expire() []byte {
	h.decided = true
	return h.hdr[:h.n]
}

// judge adds b, the header bytes just read, to those seen. An end of
// stream decides: fewer bytes than a header are no ClientHello.
func (h *helloCheck) judge(b []byte, eof bool) {
	h.n += len(b)
	decided, hello := judgeRecord(h.hdr[:h.n])
	h.decided = decided || eof
	if hello {
		h.refused = &refusal{kind: "tls_inside_tls", reason: "the app sent a TLS ClientHello " +
			"into an outbound rule (TLS inside TLS): make the app speak cleartext " +
			"to this port, or point it at the endpoint directly"}
	}
}

// judgeRecord judges the first bytes b of a stream: decided once they
// are known to begin a TLS handshake record or not, and hello when they
// do. A handshake record first in a stream is a ClientHello. Its header
// has content type 22, major version 3, a minor version up to 4, and a
// length from 1 to 2^14 (RFC 8446 5.1); each byte that fits no header
// decides at once, so a cleartext app's first byte is handed on without
// waiting for more.
func judgeRecord(b []byte) (decided, hello bool) {
	switch {
	case len(b) > 0 && b[0] != 0x16,
		len(b) > 1 && b[1] != 0x03,
		len(b) > 2 && b[2] > 0x04:
		return true, false
	case len(b) < recordHeaderLen:
		return false, false
	}
	n := int(b[3])<<8 | int(b[4])
	return true, n > 0 && n <= 1<<14
}
