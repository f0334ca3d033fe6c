package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"time"
)

// clientFlags are the flags every client command shares.
type clientFlags struct {
	addr    string
	ca      string
	version string
	pid     int
	resume  bool
}

func (f *clientFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.addr, "addr", "127.0.0.1:8443", "the proxy's TLS address")
	fs.StringVar(&f.ca, "ca", "certs/ca.pem", "CA that signed the proxy's certificate")
	fs.StringVar(&f.version, "tls", "1.3", "TLS version: 1.2 or 1.3")
	fs.IntVar(&f.pid, "pid", 0, "the proxy's process id, for CPU and memory (its children count too)")
	fs.BoolVar(&f.resume, "resume", false, "resume TLS sessions")
}

// config builds the client side's TLS settings. Every proxy meets the
// same client: one key exchange group (X25519, which every peer
// supports), AES-128-GCM first, no resumption unless asked for.
func (f *clientFlags) config() (*tls.Config, error) {
	pem, err := os.ReadFile(f.ca)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no certificate", f.ca)
	}
	v := uint16(tls.VersionTLS13)
	if f.version == "1.2" {
		v = tls.VersionTLS12
	}
	return &tls.Config{
		RootCAs:          pool,
		ServerName:       "localhost",
		MinVersion:       v,
		MaxVersion:       v,
		CurvePreferences: []tls.CurveID{tls.X25519},
		CipherSuites:     []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256},
	}, nil
}

// session opens a TLS connection and sends the backend command.
func session(addr string, cfg *tls.Config, cmd string) (*tls.Conn, error) {
	raw, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	c := tls.Client(raw, cfg)
	c.SetDeadline(time.Now().Add(60 * time.Second))
	if err := c.Handshake(); err != nil {
		raw.Close()
		return nil, err
	}
	if _, err := io.WriteString(c, cmd); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// roundTrip sends msg and reads as many bytes back.
func roundTrip(c net.Conn, msg, buf []byte) error {
	if _, err := c.Write(msg); err != nil {
		return err
	}
	if _, err := io.ReadFull(c, buf[:len(msg)]); err != nil {
		return err
	}
	if string(buf[:len(msg)]) != string(msg) {
		return errors.New("echo differs from what was sent")
	}
	return nil
}

// result prints one figure for the script.
func result(name string, v float64) { fmt.Printf("%s %.6g\n", name, v) }
