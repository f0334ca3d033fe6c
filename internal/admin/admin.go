// Package admin serves attlsd's admin endpoint: health and readiness
// probes, Prometheus metrics, the effective policy, the live connections
// and a reload trigger.
package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/attlsd/attlsd/policy"
	"github.com/attlsd/attlsd/proxy"
)

// Reloader reloads the policy at once and says how it went.
type Reloader interface {
	Reload(ctx context.Context) (generation uint64, err error)
}

// Handler returns the admin endpoint's routes for srv. metrics serves
// /metrics; view renders a policy for /policy.
func Handler(srv *proxy.Server, r Reloader, metrics http.Handler,
	view func(*policy.Policy) any) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := srv.Ready(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		gen, _ := srv.Generation()
		fmt.Fprintf(w, "ready: policy generation %d\n", gen)
	})
	mux.Handle("GET /metrics", metrics)
	mux.HandleFunc("GET /policy", func(w http.ResponseWriter, _ *http.Request) {
		gen, p := srv.Generation()
		writeJSON(w, http.StatusOK, struct {
			Generation uint64 `json:"generation"`
			Policy     any    `json:"policy"`
		}{gen, view(p)})
	})
	mux.HandleFunc("GET /connections", func(w http.ResponseWriter, req *http.Request) {
		list, err := connections(req.Context(), srv, req.URL.Query())
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		writeJSON(w, http.StatusOK, list)
	})
	mux.HandleFunc("POST /reload", func(w http.ResponseWriter, req *http.Request) {
		ctx, cancel := context.WithTimeout(req.Context(), time.Minute)
		defer cancel()
		gen, err := r.Reload(ctx)
		if err != nil {
			http.Error(w, "reload rejected; the running policy stays:\n"+err.Error(),
				http.StatusUnprocessableEntity)
			return
		}
		fmt.Fprintf(w, "reloaded: policy generation %d\n", gen)
	})
	return mux
}

// pendingWait bounds how long a lookup by address waits for connections
// that are still connecting to their backend or endpoint.
const pendingWait = 2 * time.Second

// connections lists the live connections that match the query's
// filters: rule, direction, and the backend-side address pair, as a
// backend sees it: peer (attlsd's end, the backend's remote address) and
// local (the backend's own address). A backend that cannot read the PROXY
// header asks with the two addresses of the connection it accepted.
//
// A backend may accept a connection, and ask, before attlsd's own
// connect call has returned and recorded the addresses. So when a lookup
// by address finds nothing while connections are still connecting, it
// waits for them (at most pendingWait) and looks again.
func connections(ctx context.Context, srv *proxy.Server, q url.Values) ([]proxy.ConnInfo, error) {
	match, err := connFilter(q)
	if err != nil {
		return nil, err
	}
	byAddr := q.Get("peer") != "" || q.Get("local") != ""
	timeout := time.NewTimer(pendingWait)
	defer timeout.Stop()
	for {
		pending, settled := srv.Connecting()
		out := []proxy.ConnInfo{}
		for _, c := range srv.Connections() {
			if match(c) {
				out = append(out, c)
			}
		}
		if len(out) > 0 || !byAddr || pending == 0 {
			return out, nil
		}
		select {
		case <-settled:
		case <-timeout.C:
			return out, nil
		case <-ctx.Done():
			return out, nil
		}
	}
}

// connFilter checks the query's filters and returns what they match.
func connFilter(q url.Values) (func(proxy.ConnInfo) bool, error) {
	peer, err := addrParam(q.Get("peer"))
	if err != nil {
		return nil, fmt.Errorf("peer: %w", err)
	}
	local, err := addrParam(q.Get("local"))
	if err != nil {
		return nil, fmt.Errorf("local: %w", err)
	}
	rule, dir := q.Get("rule"), q.Get("direction")
	if in, out := policy.Inbound.String(), policy.Outbound.String(); dir != "" &&
		dir != in && dir != out {
		return nil, fmt.Errorf("direction: %q is neither %s nor %s", dir, in, out)
	}
	return func(c proxy.ConnInfo) bool {
		switch {
		case rule != "" && c.Rule != rule,
			dir != "" && c.Direction != dir,
			peer != "" && !sameAddr(c.UpstreamLocal, peer),
			local != "" && !sameAddr(c.UpstreamRemote, local):
			return false
		}
		return true
	}, nil
}

// addrParam checks an address filter: host:port, or empty.
func addrParam(s string) (string, error) {
	if s == "" {
		return "", nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "", err
	}
	if net.ParseIP(host) == nil {
		return "", fmt.Errorf("%q is not an IP address", host)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return "", fmt.Errorf("%q is not a port", port)
	}
	return s, nil
}

// sameAddr compares two host:port strings, IPv4-mapped IPv6 included.
func sameAddr(a, b string) bool {
	ha, pa, err1 := net.SplitHostPort(a)
	hb, pb, err2 := net.SplitHostPort(b)
	if err1 != nil || err2 != nil || pa != pb {
		return false
	}
	ia, ib := net.ParseIP(ha), net.ParseIP(hb)
	return ia != nil && ia.Equal(ib)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// ListenAddr completes an --admin address: a port alone or an empty host
// means loopback, so the admin endpoint is never exposed by accident;
// "0.0.0.0:PORT" or "[::]:PORT" asks for every address.
func ListenAddr(s string) (string, error) {
	if !strings.Contains(s, ":") {
		s = ":" + s
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "", fmt.Errorf("--admin %q: %w", s, err)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return "", fmt.Errorf("--admin %q: port %q is not a number from 0 to 65535", s, port)
	}
	if host == "" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port), nil
}
