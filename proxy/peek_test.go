package proxy

import (
	"errors"
	"net"
	"testing"
	"time"
)

// helloHeader is the record header of a ClientHello of 512 bytes.
var helloHeader = []byte{0x16, 0x03, 0x01, 0x02, 0x00}

func TestJudgeRecord(t *testing.T) {
	tests := []struct {
		name           string
		b              []byte
		decided, hello bool
	}{
		{"nothing yet", nil, false, false},
		{"cleartext first byte", []byte("G"), true, false},
		{"handshake type alone", helloHeader[:1], false, false},
		{"not version 3", []byte{0x16, 0x02}, true, false},
		{"version 3 so far", helloHeader[:2], false, false},
		{"minor version above 4", []byte{0x16, 0x03, 0x05}, true, false},
		{"length not yet known", helloHeader[:4], false, false},
		{"ClientHello header", helloHeader, true, true},
		{"TLS 1.3 record version 3.4", []byte{0x16, 0x03, 0x04, 0x00, 0x01}, true, true},
		{"zero length", []byte{0x16, 0x03, 0x01, 0x00, 0x00}, true, false},
		{"longest record", []byte{0x16, 0x03, 0x03, 0x40, 0x00}, true, true},
		{"longer than a record", []byte{0x16, 0x03, 0x03, 0x40, 0x01}, true, false},
		{"alert record", []byte{0x15, 0x03, 0x03, 0x00, 0x02}, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			decided, hello := judgeRecord(tt.b)
			if decided != tt.decided || hello != tt.hello {
				t.Errorf("got judgeRecord(% x) = %v, %v; want %v, %v",
					tt.b, decided, hello, tt.decided, tt.hello)
			}
		})
	}
}

// errHeld says that inspect still held bytes back when the reads ran
// out: a relay would wait for more.
var errHeld = errors.New("still held back")

// throughInspect runs reads, the app's in order, through inspect as a
// relay does, nil standing for the end of the stream, and returns what
// would be forwarded and the error that ended it.
func throughInspect(reads [][]byte) (string, error) {
	h := new(helloCheck)
	for i, data := range reads {
		held, wait, err := h.inspect(data)
		if err != nil {
			return "", err
		}
		if !wait { // judged: the rest is forwarded as it comes
			out := string(held) + string(data)
			for _, r := range reads[i+1:] {
				out += string(r)
			}
			return out, nil
		}
	}
	return "", errHeld
}

// TestHelloCheckInspect reads app streams that arrive in pieces through
// the relay's hook: cleartext is forwarded byte for byte, as soon as its
// first bytes decide, so a one-byte request is not held back waiting for
// more; a ClientHello is refused however its header is split.
func TestHelloCheckInspect(t *testing.T) {
	hello := append(append([]byte(nil), helloHeader...), make([]byte, 512)...)
	tests := []struct {
		name    string
		reads   [][]byte
		want    string // forwarded
		wantErr error
	}{
		{"one cleartext byte", [][]byte{[]byte("y")}, "y", nil},
		{"cleartext request", [][]byte{[]byte("GET / HTTP/1.0\r\n\r\n"), nil},
			"GET / HTTP/1.0\r\n\r\n", nil},
		{"hello in one read", [][]byte{hello}, "", errTLSInsideTLS},
		{"hello split 1+rest", [][]byte{hello[:1], hello[1:]}, "", errTLSInsideTLS},
		{"hello split 3+rest", [][]byte{hello[:3], hello[3:]}, "", errTLSInsideTLS},
		{"hello split 4+rest", [][]byte{hello[:4], hello[4:]}, "", errTLSInsideTLS},
		{"hello byte by byte", [][]byte{hello[:1], hello[1:2], hello[2:3], hello[3:4],
			hello[4:]}, "", errTLSInsideTLS},
		{"header start then end", [][]byte{hello[:2], nil}, "\x16\x03", nil},
		{"header start then waits", [][]byte{hello[:4]}, "", errHeld},
		{"record-like cleartext split", [][]byte{{0x16}, {0x03, 0x03, 0x00}, {0x00, 'x'}, nil},
			"\x16\x03\x03\x00\x00x", nil},
		{"end at once", [][]byte{nil}, "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := throughInspect(tt.reads)
			if got != tt.want {
				t.Errorf("forwarded %q, want %q", got, tt.want)
			}
			if !matchErr(err, tt.wantErr) {
				t.Errorf("got error %v, want %v", err, tt.wantErr)
			}
		})
	}
}

// errTLSInsideTLS stands for the refusal of an app that speaks TLS.
var errTLSInsideTLS = errors.New("tls_inside_tls")

func matchErr(err, want error) bool {
	var ref *refusal
	if want == errTLSInsideTLS {
		return errors.As(err, &ref) && ref.kind == "tls_inside_tls"
	}
	return errors.Is(err, want)
}

// TestHelloCheckNoAllocs checks that judging a header that arrives one
// byte per read allocates nothing.
func TestHelloCheckNoAllocs(t *testing.T) {
	stream := []byte{0x16, 0x03, 0x03, 0x00, 0x00}
	h := new(helloCheck)
	allocs := testing.AllocsPerRun(100, func() {
		*h = helloCheck{}
		for i := range stream {
			if _, wait, err := h.inspect(stream[i : i+1]); err != nil || !wait {
				break
			}
		}
	})
	if allocs != 0 {
		t.Errorf("got %v allocations per connection, want 0", allocs)
	}
	if !h.decided || h.refused != nil {
		t.Errorf("got decided %v, refused %v; want a pass", h.decided, h.refused)
	}
}

// TestHelloCheckPeek checks the wait before dialling on real sockets: an
// app that says nothing is left after firstBytesWait, one that started a
// record header is waited for, a split ClientHello is refused, and the
// start of a header that never ends is passed once the wait is over.
func TestHelloCheckPeek(t *testing.T) {
	tests := []struct {
		name   string
		app    func(c net.Conn)
		want   string // "" for a pass, else the refusal kind
		passed string // what peek read and passed
		n      int    // header bytes seen
	}{
		{"silent app", func(net.Conn) {}, "", "", 0},
		{"cleartext", func(c net.Conn) { c.Write([]byte("EHLO")) }, "", "EHLO", 4},
		{"cleartext then end", func(c net.Conn) {
			c.Write([]byte("y"))
			c.(*net.TCPConn).CloseWrite()
		}, "", "y", 1},
		{"hello split with a pause", func(c net.Conn) {
			c.Write(helloHeader[:1])
			time.Sleep(2 * firstBytesWait)
			c.Write(helloHeader[1:])
		}, "tls_inside_tls", "", 5},
		{"header start, then silence", func(c net.Conn) {
			c.Write(helloHeader[:2])
		}, "", "\x16\x03", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			app, attlsd := tcpPair(t)
			go tt.app(app)
			h := new(helloCheck)
			err := h.peek(attlsd, time.Second)
			var ref *refusal
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("got %v, want no refusal", err)
			case tt.want != "" && (!errors.As(err, &ref) || ref.kind != tt.want):
				t.Errorf("got %v, want a %s refusal", err, tt.want)
			}
			if got := string(h.passed()); got != tt.passed || h.n != tt.n {
				t.Errorf("got %q passed, %d bytes seen; want %q, %d", got, h.n, tt.passed, tt.n)
			}
		})
	}
}
