package main

import (
	"bytes"
	"flag"
	"io"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/attlsd/attlsd/policy"
	"github.com/attlsd/attlsd/proxy"
)

// TestUsageNamesEveryRunFlag: both synopses of attlsd run, the one of
// attlsd help and the one of a bad run command line, name every flag.
func TestUsageNamesEveryRunFlag(t *testing.T) {
	fs, _ := runFlags()
	var bad bytes.Buffer
	runCmd(nil, io.Discard, &bad)
	for name, text := range map[string]string{"attlsd help": usage, "attlsd run": bad.String()} {
		fs.VisitAll(func(f *flag.Flag) {
			if !strings.Contains(text, "--"+f.Name) {
				t.Errorf("%s usage: no --%s in\n%s", name, f.Name, text)
			}
		})
	}
}

// readyProbe is a log sink that asks the server whether it is ready at
// the moment the "draining" line is written.
type readyProbe struct {
	srv *proxy.Server
	mu  sync.Mutex
	at  []error // Ready's answer at each draining line
}

func (p *readyProbe) Write(b []byte) (int, error) {
	if bytes.Contains(b, []byte(`"draining: `)) {
		p.mu.Lock()
		p.at = append(p.at, p.srv.Ready())
		p.mu.Unlock()
	}
	return len(b), nil
}

// TestDrainNotReadyBeforeLog: readiness has failed by the time the
// "draining" line is written, so a probe that follows the log never sees
// a draining attlsd as ready.
func TestDrainNotReadyBeforeLog(t *testing.T) {
	rule := &policy.Rule{Name: "api", ProxyProtocol: policy.ProxyNone,
		Backend: policy.Backend{Network: "tcp", Address: "127.0.0.1:1"}}
	pl := &policy.Listener{Addr: "127.0.0.1:0", Rules: []*policy.Rule{rule}}
	srv := proxy.New(&policy.Policy{Inbound: pl.Rules, Listeners: []*policy.Listener{pl}},
		zerolog.Nop())
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	if err := srv.Ready(); err != nil {
		t.Fatalf("ready before the drain: got %v, want nil", err)
	}

	probe := &readyProbe{srv: srv}
	drain(zerolog.New(probe), srv, make(chan os.Signal), time.Minute)
	if len(probe.at) != 1 {
		t.Fatalf("draining lines: got %d, want 1", len(probe.at))
	}
	if err := probe.at[0]; err == nil || !strings.Contains(err.Error(), "draining") {
		t.Errorf("readiness when the draining line was written: got %v, want a draining error", err)
	}
}

// stuckCloser is a server whose Close never returns, as if a connection
// goroutine were held by something unforeseen.
type stuckCloser struct{ release chan struct{} }

func (s stuckCloser) CloseFor(string) error { <-s.release; return nil }
func (stuckCloser) Open() int               { return 1 }

// TestCloseAllDoesNotHang: a stop never waits on the connections'
// goroutines for ever: closeAll returns at the next signal, or after its
// grace period without one.
func TestCloseAllDoesNotHang(t *testing.T) {
	tests := []struct {
		name string
		sig  os.Signal // sent while closeAll waits; nil for none
	}{
		{"signal", syscall.SIGTERM},
		{"grace", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := stuckCloser{make(chan struct{})}
			defer close(srv.release)
			done := make(chan struct{})
			close(done)
			sigs := make(chan os.Signal, 1)
			if tt.sig != nil {
				sigs <- tt.sig
			}
			returned := make(chan struct{})
			go func() {
				closeAll(zerolog.Nop(), srv, done, sigs, "test")
				close(returned)
			}()
			select {
			case <-returned:
			case <-time.After(closeGrace + 10*time.Second):
				t.Fatal("closeAll still waiting for a Close that never returns")
			}
		})
	}
}
