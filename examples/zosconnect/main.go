// Command zosconnect holds the stand-ins of the z/OS Connect harness, one
// subcommand each:
//
//	cics        the calling client: cleartext HTTP to the CICS side attlsd
//	zosconnect  the server: cleartext behind the z/OS side attlsd's inbound
//	            rule, calling the RESTful API through its outbound rule
//	restful     the RESTful API endpoint, which does its own TLS
//
// run.sh starts them between two attlsd processes; see README.md.
package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	cmd, args := os.Args[1], os.Args[2:]
	log.SetFlags(0)
	log.SetPrefix(cmd + ": ")

	var err error
	switch cmd {
	case "cics":
		err = cicsCmd(args)
	case "zosconnect":
		err = zosConnectCmd(args)
	case "restful":
		err = restfulCmd(args)
	default:
		usage()
	}
	if err != nil {
		log.Fatal(err)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: zosconnect cics|zosconnect|restful [flags]")
	os.Exit(2)
}

// reply is what the RESTful endpoint answers and z/OS Connect passes on
// to CICS, each adding what it saw of its caller.
type reply struct {
	ZosConnect *zosView  `json:"zosconnect,omitempty"`
	Restful    *restView `json:"restful,omitempty"`
	Account    string    `json:"account,omitempty"`
	Balance    string    `json:"balance,omitempty"`
	Error      string    `json:"error,omitempty"` // why the RESTful call failed
}

// zosView is what the z/OS Connect stand-in learned about its caller: the
// socket comes from the z/OS side attlsd, the PROXY header describes the
// TLS client behind it.
type zosView struct {
	Peer         string   `json:"peer"`          // the socket's peer: attlsd
	ProxyVersion int      `json:"proxy_version"` // 0: no PROXY header
	Client       string   `json:"client"`        // the TLS client, per the header
	Destination  string   `json:"destination"`   // the address it reached
	ConnID       string   `json:"conn_id"`
	Rule         string   `json:"rule"`
	SNI          string   `json:"sni"`
	ALPN         string   `json:"alpn"`
	TLS          bool     `json:"tls"`
	TLSVersion   string   `json:"tls_version"`
	Cipher       string   `json:"cipher"`
	Group        string   `json:"group"`
	CertVerified bool     `json:"client_cert_verified"` // attlsd says it checked one
	CertMaterial []string `json:"client_cert_material"` // what of it arrived; want none
	TLVs         []string `json:"tlvs"`                 // every TLV type, SSL sub-TLVs included
	Request      string   `json:"request"`
}

// restView is what the RESTful endpoint learned from its own handshake.
type restView struct {
	Client        string `json:"client"`
	TLSVersion    string `json:"tls_version"`
	Cipher        string `json:"cipher"`
	SNI           string `json:"sni"`
	ALPN          string `json:"alpn"`
	ClientSubject string `json:"client_subject"`
	ClientIssuer  string `json:"client_issuer"`
	Request       string `json:"request"`
}

// writeJSON answers with v as indented JSON.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// serve runs srv on ln until SIGINT or SIGTERM, then lets the requests in
// flight finish. run.sh waits for the "listening on" line.
func serve(srv *http.Server, ln net.Listener) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Printf("listening on %s", ln.Addr())

	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}

// readCert reads the first certificate of a PEM file.
func readCert(file string) (*x509.Certificate, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, errors.New(file + ": no PEM certificate")
	}
	return x509.ParseCertificate(blk.Bytes)
}
