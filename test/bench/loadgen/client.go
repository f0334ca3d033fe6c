package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
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
	pin     string
	version string
	pid     int
	resume  bool
}

func (f *clientFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.addr, "addr", "127.0.0.1:8443", "the proxy's TLS address")
	fs.StringVar(&f.ca, "ca", "certs/ca.pem", "CA that signed the proxy's certificate")
	fs.StringVar(&f.pin, "pin", "", "the proxy's certificate (PEM): compare it instead of verifying "+
		"the chain, so that the client spends less CPU per handshake than the proxy")
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
	cfg := &tls.Config{
		RootCAs:          pool,
		ServerName:       "localhost",
		MinVersion:       v,
		MaxVersion:       v,
		CurvePreferences: []tls.CurveID{tls.X25519, tls.CurveP256},
		CipherSuites:     []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256},
	}
	if f.pin != "" {
		if err := pinTo(cfg, f.pin); err != nil {
			return nil, err
		}
	}
	return cfg, nil
}

// pinTo makes cfg accept exactly the certificate in file.
func pinTo(cfg *tls.Config, file string) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return fmt.Errorf("%s: no PEM certificate", file)
	}
	want := block.Bytes
	cfg.InsecureSkipVerify = true // replaced by the comparison below
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 || !bytes.Equal(cs.PeerCertificates[0].Raw, want) {
			return errors.New("the proxy's certificate is not the pinned one")
		}
		return nil
	}
	return nil
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
