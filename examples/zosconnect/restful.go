package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"log"
	"net/http"
	"os"
	"path"
	"time"
)

// restfulCmd runs the RESTful API endpoint stand-in. It terminates TLS
// itself and demands a client certificate signed by the dev CA, like an
// API endpoint that wants mutual TLS from z/OS Connect.
func restfulCmd(args []string) error {
	fs := flag.NewFlagSet("restful", flag.ContinueOnError)
	addr := fs.String("listen", "127.0.0.1:5443", "TLS address")
	certFile := fs.String("cert", "certs/server.pem", "server certificate (PEM)")
	keyFile := fs.String("key", "certs/server-key.pem", "its private key (PEM)")
	caFile := fs.String("ca", "certs/ca.pem", "CA that signs client certificates")
	if err := fs.Parse(args); err != nil {
		return err
	}

	cfg, err := serverTLS(*certFile, *keyFile, *caFile)
	if err != nil {
		return err
	}
	ln, err := tls.Listen("tcp", *addr, cfg)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           http.HandlerFunc(account),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.Default(), // failed handshakes
	}
	return serve(srv, ln)
}

// serverTLS requires and verifies a client certificate against the CA.
func serverTLS(certFile, keyFile, caFile string) (*tls.Config, error) {
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New(caFile + ": no PEM certificate")
	}
	return &tls.Config{
		Certificates: []tls.Certificate{pair},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"http/1.1"},
	}, nil
}

// account answers GET /accounts/ID with a made-up balance and what the
// endpoint saw of its TLS client.
func account(w http.ResponseWriter, r *http.Request) {
	seen := &restView{Client: r.RemoteAddr, Request: r.Method + " " + r.URL.Path}
	if cs := r.TLS; cs != nil {
		seen.TLSVersion = tls.VersionName(cs.Version)
		seen.Cipher = tls.CipherSuiteName(cs.CipherSuite)
		seen.SNI, seen.ALPN = cs.ServerName, cs.NegotiatedProtocol
		if len(cs.PeerCertificates) > 0 {
			seen.ClientSubject = cs.PeerCertificates[0].Subject.String()
			seen.ClientIssuer = cs.PeerCertificates[0].Issuer.String()
		}
	}
	log.Printf("%s from %s, client certificate %q", seen.Request, seen.Client,
		seen.ClientSubject)
	writeJSON(w, http.StatusOK, &reply{Restful: seen,
		Account: path.Base(r.URL.Path), Balance: "1234.56"})
}
