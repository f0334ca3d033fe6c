package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"strings"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
	"github.com/pires/go-proxyproto/tlvparse"
)

// tlvRule is attlsd's TLV for the matched rule's name.
const tlvRule proxyproto.PP2Type = 0xE1

// connKey finds the PROXY protocol connection in a request's context.
type connKey struct{}

// zosConnect is the z/OS Connect stand-in: a cleartext HTTP server behind
// attlsd's inbound rule, like z/OS Connect behind AT-TLS on port 5004.
type zosConnect struct {
	api    string       // the RESTful API, through attlsd's outbound rule
	client *http.Client // cleartext: attlsd adds TLS
	watch  []byte       // DER of CICS's certificate, looked for in what arrives
	cn     string       // its common name, likewise
}

func zosConnectCmd(args []string) error {
	fs := flag.NewFlagSet("zosconnect", flag.ContinueOnError)
	addr := fs.String("listen", "127.0.0.1:9080", "cleartext address attlsd forwards to")
	api := fs.String("api", "http://127.0.0.1:5005", "RESTful API base URL, "+
		"through attlsd's outbound rule")
	watch := fs.String("client-cert", "", "CICS's client certificate (PEM), "+
		"to check that none of it arrives here")
	if err := fs.Parse(args); err != nil {
		return err
	}

	z := &zosConnect{api: strings.TrimSuffix(*api, "/"), client: &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{DisableKeepAlives: true},
	}}
	if *watch != "" {
		cert, err := readCert(*watch)
		if err != nil {
			return err
		}
		z.watch, z.cn = cert.Raw, cert.Subject.CommonName
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	return serve(z.server(), z.proxyListener(ln))
}

// proxyListener demands a PROXY header on every connection: anything
// reaching z/OS Connect must have come through attlsd.
func (z *zosConnect) proxyListener(ln net.Listener) net.Listener {
	return &proxyproto.Listener{
		Listener:          ln,
		ReadHeaderTimeout: 5 * time.Second,
		ConnPolicy: func(proxyproto.ConnPolicyOptions) (proxyproto.Policy, error) {
			return proxyproto.REQUIRE, nil
		},
	}
}

func (z *zosConnect) server() *http.Server {
	return &http.Server{
		Handler:           z,
		ReadHeaderTimeout: 10 * time.Second,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, connKey{}, c)
		},
	}
}

// ServeHTTP answers a CICS request by calling the RESTful API with the
// same path, and adds what this server saw of its caller.
func (z *zosConnect) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	seen := z.caller(r)
	log.Printf("%s from %s (PROXY v%d client %s, rule %q)",
		seen.Request, seen.Peer, seen.ProxyVersion, seen.Client, seen.Rule)

	status := http.StatusOK
	rep, err := z.callAPI(r.Context(), r.URL.Path)
	if err != nil {
		log.Printf("call the RESTful API: %v", err)
		status, rep = http.StatusBadGateway, &reply{Error: "call the RESTful API: " + err.Error()}
	}
	rep.ZosConnect = seen
	writeJSON(w, status, rep)
}

// callAPI GETs path from the RESTful API and decodes its answer.
func (z *zosConnect) callAPI(ctx context.Context, path string) (*reply, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, z.api+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := z.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()

	var rep reply
	if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
		return nil, fmt.Errorf("decode the answer (%s): %w", resp.Status, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", resp.Status, rep.Error)
	}
	return &rep, nil
}

// caller describes the connection r came on: its peer and the PROXY
// header in front of it.
func (z *zosConnect) caller(r *http.Request) *zosView {
	v := &zosView{Request: r.Method + " " + r.URL.Path, CertMaterial: []string{}}
	c, ok := r.Context().Value(connKey{}).(*proxyproto.Conn)
	if !ok {
		return v
	}
	v.Peer = c.Raw().RemoteAddr().String()
	if h := c.ProxyHeader(); h != nil {
		z.describe(v, h)
	}
	if z.cn != "" && strings.Contains(fmt.Sprint(r.Header), z.cn) {
		v.CertMaterial = append(v.CertMaterial, "subject CN in the HTTP headers")
	}
	return v
}

// describe fills v from the PROXY header h.
func (z *zosConnect) describe(v *zosView, h *proxyproto.Header) {
	v.ProxyVersion = int(h.Version)
	v.Client, v.Destination = h.SourceAddr.String(), h.DestinationAddr.String()
	tlvs, _ := h.TLVs()
	for _, t := range tlvs {
		v.TLVs = append(v.TLVs, fmt.Sprintf("0x%02x", byte(t.Type)))
		switch t.Type {
		case proxyproto.PP2_TYPE_UNIQUE_ID:
			v.ConnID = string(t.Value)
		case proxyproto.PP2_TYPE_AUTHORITY:
			v.SNI = string(t.Value)
		case proxyproto.PP2_TYPE_ALPN:
			v.ALPN = string(t.Value)
		case tlvRule:
			v.Rule = string(t.Value)
		}
	}
	if ssl, ok := tlvparse.FindSSL(tlvs); ok {
		describeSSL(v, ssl)
	}
	z.lookForCert(v, h)
}

// describeSSL fills v from the SSL TLV and its sub-TLVs.
func describeSSL(v *zosView, ssl tlvparse.PP2SSL) {
	v.TLS = ssl.ClientSSL()
	v.TLSVersion, _ = ssl.SSLVersion()
	v.Cipher, _ = ssl.SSLCipher()
	v.Group, _ = ssl.SSLGroup()
	v.CertVerified = ssl.ClientCertConn() && ssl.Verified()
	for _, t := range ssl.TLV {
		v.TLVs = append(v.TLVs, fmt.Sprintf("0x%02x", byte(t.Type)))
		switch t.Type {
		case proxyproto.PP2_SUBTYPE_SSL_CN:
			v.CertMaterial = append(v.CertMaterial, "SSL_CN sub-TLV")
		case proxyproto.PP2_SUBTYPE_SSL_CLIENT_CERT:
			v.CertMaterial = append(v.CertMaterial, "client certificate sub-TLV")
		}
	}
}

// lookForCert records any trace of CICS's certificate in the header's
// bytes: attlsd may say it verified one, never whose it was.
func (z *zosConnect) lookForCert(v *zosView, h *proxyproto.Header) {
	raw, err := h.Format()
	if err != nil {
		return
	}
	if len(z.watch) > 0 && bytes.Contains(raw, z.watch) {
		v.CertMaterial = append(v.CertMaterial, "certificate DER in the PROXY header")
	}
	if z.cn != "" && bytes.Contains(raw, []byte(z.cn)) {
		v.CertMaterial = append(v.CertMaterial, "subject CN in the PROXY header")
	}
}
