package main

import (
	"bufio"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// throughputCmd streams bytes through the proxy on a few connections at
// once: up (client to backend), down (backend to client) or echo (both).
func throughputCmd(args []string) error {
	fs := flag.NewFlagSet("throughput", flag.ExitOnError)
	var f clientFlags
	f.register(fs)
	mode := fs.String("mode", "up", "up, down or echo")
	conns := fs.Int("conns", 4, "parallel connections")
	size := fs.Int64("bytes", 128<<20, "bytes each connection moves (each way for echo)")
	fs.Parse(args)
	cfg, err := f.config()
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	errs := make(chan error, *conns)
	cpu0, start := cpuSeconds(f.pid), time.Now()
	for range *conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- stream(f.addr, cfg, *mode, *size)
		}()
	}
	wg.Wait()
	elapsed, cpu := time.Since(start).Seconds(), cpuSeconds(f.pid)-cpu0
	close(errs)
	for err := range errs {
		if err != nil {
			return err
		}
	}
	moved := float64(*size) * float64(*conns)
	if *mode == "echo" {
		moved *= 2
	}
	result("throughput_MBps", moved/elapsed/1e6)
	result("GB", moved/1e9)
	result("cpu_s", cpu)
	return nil
}

// stream moves size bytes on one connection and checks that they all
// arrived.
func stream(addr string, cfg *tls.Config, mode string, size int64) error {
	if mode != "up" && mode != "down" && mode != "echo" {
		return fmt.Errorf("unknown mode %q", mode)
	}
	cmd := fmt.Sprintf("%s %d\n", mode, size)
	c, err := session(addr, cfg, cmd)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Minute))
	switch mode {
	case "up":
		if err := sendN(c, size); err != nil {
			return err
		}
		var got int64
		if _, err := fmt.Fscanf(bufio.NewReader(c), "ok %d\n", &got); err != nil || got != size {
			return fmt.Errorf("up: backend got %d of %d bytes (%v)", got, size, err)
		}
	case "down":
		return expect(c, size)
	case "echo":
		errc := make(chan error, 1)
		go func() { errc <- sendN(c, size) }()
		if err := expect(c, size); err != nil {
			return err
		}
		return <-errc
	}
	return nil
}

// expect reads exactly size bytes.
func expect(r io.Reader, size int64) error {
	got, err := io.CopyBuffer(io.Discard, io.LimitReader(r, size), make([]byte, 64<<10))
	if got != size {
		return fmt.Errorf("got %d of %d bytes: %v", got, size, err)
	}
	return nil
}

// handshakeCmd opens connections as fast as workers can, each with a full
// handshake (or a resumed one) and one 64-byte round trip.
func handshakeCmd(args []string) error {
	fs := flag.NewFlagSet("handshake", flag.ExitOnError)
	var f clientFlags
	f.register(fs)
	workers := fs.Int("workers", 8, "concurrent clients")
	dur := fs.Duration("duration", 10*time.Second, "how long to run")
	fs.Parse(args)
	cfg, err := f.config()
	if err != nil {
		return err
	}
	var done, resumed, failed atomic.Int64
	stop := time.Now().Add(*dur)
	var wg sync.WaitGroup
	cpu0, start := cpuSeconds(f.pid), time.Now()
	for range *workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			wc := cfg.Clone()
			if f.resume {
				wc.ClientSessionCache = tls.NewLRUClientSessionCache(4)
			}
			msg, buf := make([]byte, 64), make([]byte, 64)
			for time.Now().Before(stop) {
				r, err := oneExchange(f.addr, wc, msg, buf)
				switch {
				case err != nil:
					if failed.Add(1) == 1 {
						fmt.Fprintln(os.Stderr, "loadgen: first failure:", err)
					}
				case r:
					resumed.Add(1)
					fallthrough
				default:
					done.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	elapsed, cpu := time.Since(start).Seconds(), cpuSeconds(f.pid)-cpu0
	result("handshakes_per_s", float64(done.Load())/elapsed)
	result("resumed_fraction", float64(resumed.Load())/max(1, float64(done.Load())))
	result("failed", float64(failed.Load()))
	result("handshakes", float64(done.Load()))
	result("cpu_s", cpu)
	return nil
}

// oneExchange is one connection: handshake, a round trip, close.
func oneExchange(addr string, cfg *tls.Config, msg, buf []byte) (resumed bool, err error) {
	c, err := session(addr, cfg, "echo\n")
	if err != nil {
		return false, err
	}
	defer c.Close()
	if err := roundTrip(c, msg, buf); err != nil {
		return false, err
	}
	return c.ConnectionState().DidResume, nil
}

// pingCmd times 64-byte round trips on one kept-open connection.
func pingCmd(args []string) error {
	fs := flag.NewFlagSet("ping", flag.ExitOnError)
	var f clientFlags
	f.register(fs)
	n := fs.Int("n", 20000, "round trips")
	fs.Parse(args)
	cfg, err := f.config()
	if err != nil {
		return err
	}
	c, err := session(f.addr, cfg, "echo\n")
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Minute))
	msg, buf := make([]byte, 64), make([]byte, 64)
	for range 1000 { // warm up
		if err := roundTrip(c, msg, buf); err != nil {
			return err
		}
	}
	rtt := make([]time.Duration, *n)
	for i := range rtt {
		t0 := time.Now()
		if err := roundTrip(c, msg, buf); err != nil {
			return err
		}
		rtt[i] = time.Since(t0)
	}
	sort.Slice(rtt, func(i, j int) bool { return rtt[i] < rtt[j] })
	result("ping_p50_us", float64(rtt[len(rtt)/2].Microseconds()))
	result("ping_p99_us", float64(rtt[len(rtt)*99/100].Microseconds()))
	return nil
}

// idleCmd opens n connections, each with one round trip, keeps them open
// and idle, and reports how much the proxy's resident memory grew per
// connection once it has settled.
func idleCmd(args []string) error {
	fs := flag.NewFlagSet("idle", flag.ExitOnError)
	var f clientFlags
	f.register(fs)
	n := fs.Int("n", 5000, "idle connections")
	settle := fs.Duration("settle", 10*time.Second, "wait before reading memory")
	fs.Parse(args)
	cfg, err := f.config()
	if err != nil {
		return err
	}
	before := rssBytes(f.pid)
	conns, err := openIdle(f.addr, cfg, *n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	if err != nil {
		return err
	}
	time.Sleep(*settle)
	after := rssBytes(f.pid)
	// Every connection must still be alive: a proxy that dropped some
	// would look lean.
	msg, buf := make([]byte, 64), make([]byte, 64)
	for _, c := range conns {
		if err := roundTrip(c, msg, buf); err != nil {
			return fmt.Errorf("idle connection died: %w", err)
		}
	}
	result("rss_before_MiB", float64(before)/(1<<20))
	result("rss_after_MiB", float64(after)/(1<<20))
	result("idle_KiB_per_conn", float64(after-before)/1024/float64(*n))
	return nil
}

// openIdle opens n connections, 50 at a time, each after one round trip.
func openIdle(addr string, cfg *tls.Config, n int) ([]*tls.Conn, error) {
	conns := make([]*tls.Conn, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			msg, buf := make([]byte, 64), make([]byte, 64)
			for i := next.Add(1) - 1; i < int64(n); i = next.Add(1) - 1 {
				c, err := session(addr, cfg, "echo\n")
				if err == nil {
					err = roundTrip(c, msg, buf)
				}
				if err != nil {
					errs <- err
					return
				}
				c.SetDeadline(time.Time{})
				conns[i] = c
			}
		}()
	}
	wg.Wait()
	close(errs)
	open := conns[:0]
	for _, c := range conns {
		if c != nil {
			open = append(open, c)
		}
	}
	return open, <-errs
}
