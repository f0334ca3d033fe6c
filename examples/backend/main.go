// Command backend is the demo cleartext app that stands behind attlsd. It
// reads the PROXY header attlsd sends and answers every HTTP request with
// the connection metadata it received, as JSON.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
	"github.com/pires/go-proxyproto/tlvparse"
)

// tlvRule is attlsd's TLV for the matched rule's name.
const tlvRule proxyproto.PP2Type = 0xE1

type ctxKey struct{}

func main() {
	addr := flag.String("listen", "127.0.0.1:9080", "host:port or unix:/path")
	flag.Parse()

	ln, err := listen(*addr)
	if err != nil {
		log.Fatal(err)
	}
	pln := &proxyproto.Listener{
		Listener:          ln,
		ReadHeaderTimeout: 5 * time.Second,
		ConnPolicy: func(proxyproto.ConnPolicyOptions) (proxyproto.Policy, error) {
			return proxyproto.USE, nil
		},
	}
	srv := &http.Server{
		Handler:           http.HandlerFunc(answer),
		ReadHeaderTimeout: 10 * time.Second,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, ctxKey{}, c)
		},
	}
	fmt.Fprintf(os.Stderr, "demo backend listening on %s\n", *addr)
	log.Fatal(srv.Serve(pln))
}

func listen(addr string) (net.Listener, error) {
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		os.Remove(path)
		return net.Listen("unix", path)
	}
	return net.Listen("tcp", addr)
}

// metadata is what the backend learned about the client's connection.
type metadata struct {
	ProxyHeader  bool   `json:"proxy_header"`
	Client       string `json:"client,omitempty"`
	Destination  string `json:"destination,omitempty"`
	ConnID       string `json:"conn_id,omitempty"`
	Rule         string `json:"rule,omitempty"`
	SNI          string `json:"sni,omitempty"`
	ALPN         string `json:"alpn,omitempty"`
	TLS          bool   `json:"tls"`
	TLSVersion   string `json:"tls_version,omitempty"`
	Cipher       string `json:"cipher,omitempty"`
	Group        string `json:"group,omitempty"`
	SigScheme    string `json:"sig_scheme,omitempty"`
	CertVerified bool   `json:"client_cert_verified"`
	Method       string `json:"method"`
	Path         string `json:"path"`
}

func answer(w http.ResponseWriter, r *http.Request) {
	m := metadata{Method: r.Method, Path: r.URL.Path}
	if c, ok := r.Context().Value(ctxKey{}).(*proxyproto.Conn); ok {
		describe(&m, c.ProxyHeader())
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(m)
}

func describe(m *metadata, h *proxyproto.Header) {
	if h == nil {
		return
	}
	m.ProxyHeader = true
	m.Client = h.SourceAddr.String()
	m.Destination = h.DestinationAddr.String()
	tlvs, _ := h.TLVs()
	for _, t := range tlvs {
		switch t.Type {
		case proxyproto.PP2_TYPE_UNIQUE_ID:
			m.ConnID = string(t.Value)
		case proxyproto.PP2_TYPE_AUTHORITY:
			m.SNI = string(t.Value)
		case proxyproto.PP2_TYPE_ALPN:
			m.ALPN = string(t.Value)
		case tlvRule:
			m.Rule = string(t.Value)
		}
	}
	ssl, ok := tlvparse.FindSSL(tlvs)
	if !ok {
		return
	}
	m.TLS = ssl.ClientSSL()
	m.TLSVersion, _ = ssl.SSLVersion()
	m.Cipher, _ = ssl.SSLCipher()
	m.Group, _ = ssl.SSLGroup()
	m.SigScheme, _ = ssl.SSLSigScheme()
	m.CertVerified = ssl.ClientCertConn() && ssl.Verified()
}
