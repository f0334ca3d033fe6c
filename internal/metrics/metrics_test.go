package metrics

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/attlsd/attlsd/internal/testnet"
	"github.com/attlsd/attlsd/policy"
	"github.com/attlsd/attlsd/proxy"
)

// startScraped runs a server with one cleartext rule, "api", in front of
// an echo backend, and an HTTP server for its metrics. It returns the
// rule's address and the metrics URL.
func startScraped(t *testing.T) (addr, url string) {
	t.Helper()
	rule := &policy.Rule{Name: "api", ProxyProtocol: policy.ProxyNone,
		Backend: policy.Backend{Network: "tcp", Address: testnet.EchoBackend(t)}}
	pl := &policy.Listener{Addr: "127.0.0.1:0", Rules: []*policy.Rule{rule}}
	srv := proxy.New(&policy.Policy{Inbound: pl.Rules, Listeners: []*policy.Listener{pl}},
		zerolog.New(slowWriter{}))
	m := New(srv)
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	hs := httptest.NewServer(m.Handler())
	t.Cleanup(hs.Close)
	return srv.Addrs()[0], hs.URL
}

// slowWriter takes a while over each log line, as a busy journal or a
// full stderr pipe does. The end of a connection, logged once its bytes
// are final, then spans several scrapes.
type slowWriter struct{}

func (slowWriter) Write(p []byte) (int, error) {
	time.Sleep(2 * time.Millisecond)
	return len(p), nil
}

// shortConn sends payload through addr, half-closes and reads the echo.
func shortConn(addr string, payload []byte) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(payload); err != nil {
		return err
	}
	c.(*net.TCPConn).CloseWrite()
	_, err = io.Copy(io.Discard, c)
	return err
}

// samples scrapes url and returns every sample of the named families,
// keyed by name and labels as printed.
func samples(t *testing.T, url string, names ...string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: got %d, want 200:\n%s", resp.StatusCode, body)
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		series, value, ok := strings.Cut(line, " ")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		for _, n := range names {
			if series == n || strings.HasPrefix(series, n+"{") {
				v, err := strconv.ParseFloat(value, 64)
				if err != nil {
					t.Fatalf("sample %q: %v", line, err)
				}
				out[series] = v
			}
		}
	}
	return out
}

// TestCountersNeverDecrease scrapes over and over while many short
// connections come and go: no counter may ever go down, which Prometheus
// would read as a restart of attlsd. The clients pause between
// connections, so that no other traffic hides a closing connection
// counted twice, or not at all, by one scrape.
func TestCountersNeverDecrease(t *testing.T) {
	addr, url := startScraped(t)
	counters := []string{"attlsd_bytes_in_total", "attlsd_bytes_out_total",
		"attlsd_connections_opened_total", "attlsd_connections_closed_total"}

	const workers, perWorker = 2, 100
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			payload := make([]byte, 64<<10+w)
			for range perWorker {
				if err := shortConn(addr, payload); err != nil {
					errs <- err
					return
				}
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()

	last := map[string]float64{}
	check := func(scrape int) {
		for k, v := range samples(t, url, counters...) {
			if v < last[k] {
				t.Fatalf("scrape %d: %s went down from %v to %v", scrape, k, last[k], v)
			}
			last[k] = v
		}
	}
	scrapes := 0
	for finished := false; !finished; scrapes++ {
		select {
		case <-done:
			finished = true
		default:
		}
		check(scrapes)
	}
	close(errs)
	for err := range errs {
		t.Fatalf("client: %v", err)
	}
	want := float64(workers * perWorker)
	if got := last[`attlsd_connections_opened_total{direction="inbound",rule="api"}`]; got != want {
		t.Errorf("connections opened: got %v, want %v", got, want)
	}
	t.Logf("%d scrapes", scrapes)
}
