package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptrace"
	"os"
	"strings"
	"time"
)

// report is the whole chain as the CICS stand-in saw it, hop by hop.
type report struct {
	Sent   string `json:"sent"` // the request line
	From   string `json:"from"` // CICS's own address
	To     string `json:"to"`   // the CICS side attlsd's outbound rule
	Status int    `json:"status"`
	Error  string `json:"error,omitempty"`
	Reply  *reply `json:"reply,omitempty"`
	Hops   []hop  `json:"hops"`
}

// hop is one line of the chain and whether it looked right.
type hop struct {
	OK   bool   `json:"ok"`
	Line string `json:"line"`
}

// cicsCmd runs the CICS stand-in: one cleartext call to the CICS side
// attlsd, then the chain printed one hop a line. It fails when any hop
// did not look right.
func cicsCmd(args []string) error {
	fs := flag.NewFlagSet("cics", flag.ContinueOnError)
	to := fs.String("to", "127.0.0.1:5003", "the CICS side attlsd's outbound rule")
	id := fs.String("account", "0042", "the account to ask for")
	file := fs.String("report", "", "also write the chain as JSON to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}

	rep := call(*to, *id)
	rep.Hops = rep.check()
	failed := 0
	for i, h := range rep.Hops {
		mark := "ok"
		if !h.OK {
			mark, failed = "FAIL", failed+1
		}
		fmt.Printf("%-4s %d. %s\n", mark, i+1, h.Line)
	}
	if *file != "" {
		if err := writeReport(*file, rep); err != nil {
			return err
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d hops failed", failed, len(rep.Hops))
	}
	return nil
}

// call sends GET /accounts/ID in cleartext to the outbound rule at to.
func call(to, id string) *report {
	rep := &report{To: to, Sent: "GET /accounts/" + id}
	trace := &httptrace.ClientTrace{GotConn: func(c httptrace.GotConnInfo) {
		rep.From = c.Conn.LocalAddr().String()
	}}
	ctx := httptrace.WithClientTrace(context.Background(), trace)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet,
		"http://"+to+"/accounts/"+id, nil)
	if err != nil {
		rep.Error = err.Error()
		return rep
	}
	client := &http.Client{Timeout: 15 * time.Second,
		Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		rep.Error = err.Error()
		return rep
	}
	defer resp.Body.Close()

	rep.Status = resp.StatusCode
	rep.Reply = new(reply)
	if err := json.NewDecoder(resp.Body).Decode(rep.Reply); err != nil {
		rep.Error, rep.Reply = "decode the answer: "+err.Error(), nil
	}
	return rep
}

// check judges each hop: what CICS sent, what z/OS Connect saw, what the
// RESTful endpoint saw, what came back.
func (r *report) check() []hop {
	return []hop{r.sentHop(), r.zosHop(), r.restHop(), r.backHop()}
}

func (r *report) sentHop() hop {
	if r.From == "" {
		return hop{Line: fmt.Sprintf("CICS could not reach %s: %s", r.To, r.Error)}
	}
	return hop{OK: true, Line: fmt.Sprintf("CICS sent          %s in cleartext, "+
		"from %s to %s (CICS side attlsd, outbound)", r.Sent, r.From, r.To)}
}

func (r *report) zosHop() hop {
	if r.Reply == nil || r.Reply.ZosConnect == nil {
		return hop{Line: "z/OS Connect saw   nothing: no answer (" + r.Error + ")"}
	}
	z := r.Reply.ZosConnect
	line := fmt.Sprintf("z/OS Connect saw   cleartext from attlsd %s; PROXY v%d: "+
		"client %s, %s %s %s, SNI %s, ALPN %s, rule %q, conn %s; %s",
		z.Peer, z.ProxyVersion, z.Client, z.TLSVersion, z.Cipher, z.Group,
		z.SNI, z.ALPN, z.Rule, z.ConnID, certNote(z))
	return judged(line, r.zosProblems(z))
}

// zosProblems lists what is wrong with what z/OS Connect saw.
func (r *report) zosProblems(z *zosView) []string {
	var p []string
	switch {
	case z.ProxyVersion != 2:
		p = append(p, "no PROXY v2 header")
	case !z.TLS || z.TLSVersion == "":
		p = append(p, "the header says the client did not use TLS")
	case z.Rule == "" || z.ConnID == "":
		p = append(p, "no rule or connection id in the header")
	case z.Client == r.From:
		p = append(p, "the header names CICS itself, not the CICS side attlsd")
	}
	if len(z.CertMaterial) > 0 {
		p = append(p, "client certificate material arrived: "+
			strings.Join(z.CertMaterial, ", "))
	}
	return p
}

// certNote says what z/OS Connect learned about the client certificate.
func certNote(z *zosView) string {
	if len(z.CertMaterial) > 0 {
		return "client certificate material received"
	}
	if z.CertVerified {
		return "client certificate verified by attlsd, none of it received"
	}
	return "no client certificate received"
}

func (r *report) restHop() hop {
	if r.Reply == nil || r.Reply.Restful == nil {
		why := r.Error
		if r.Reply != nil && r.Reply.Error != "" {
			why = r.Reply.Error
		}
		return hop{Line: "RESTful API saw    nothing (" + why + ")"}
	}
	s := r.Reply.Restful
	line := fmt.Sprintf("RESTful API saw    TLS from %s: %s %s, SNI %s, ALPN %s, "+
		"client certificate %q issued by %q", s.Client, s.TLSVersion, s.Cipher,
		s.SNI, s.ALPN, s.ClientSubject, s.ClientIssuer)
	var p []string
	if s.ClientSubject == "" {
		p = append(p, "no client certificate")
	}
	return judged(line, p)
}

func (r *report) backHop() hop {
	if r.Reply == nil {
		return hop{Line: fmt.Sprintf("CICS got           no answer (%s)", r.Error)}
	}
	line := fmt.Sprintf("CICS got           %d %s: account %s, balance %s",
		r.Status, http.StatusText(r.Status), r.Reply.Account, r.Reply.Balance)
	var p []string
	if r.Status != http.StatusOK || r.Reply.Balance == "" {
		p = append(p, "not the account's balance")
	}
	return judged(line, p)
}

// judged is a hop that is right when there are no problems.
func judged(line string, problems []string) hop {
	if len(problems) == 0 {
		return hop{OK: true, Line: line}
	}
	return hop{Line: line + " -- " + strings.Join(problems, "; ")}
}

// writeReport writes the chain as indented JSON.
func writeReport(file string, rep *report) error {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(file, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}
