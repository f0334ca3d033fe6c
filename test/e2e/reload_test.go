package e2e

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Log messages of a reload, as attlsd writes them.
const (
	msgRejectedDiags = "reload rejected: policy has errors; the running policy stays"
	msgRejected      = "reload rejected; the running policy stays"
	msgUnchanged     = "policy files unchanged; nothing to reload"
)

// TestReloadFileStyles replaces the policy, and then the certificate and
// key, in every way files get replaced on a live system, twice in a row
// (a watch lost with the first replacement would miss the second), and
// checks that a client sees each change: the rule's backend for the
// policy, the certificate serial for the pair.
func TestReloadFileStyles(t *testing.T) {
	for _, st := range fileStyles {
		t.Run("policy/"+st.name, func(t *testing.T) { testPolicyStyle(t, st) })
	}
	for _, st := range fileStyles {
		t.Run("certificate/"+st.name, func(t *testing.T) { testPairStyle(t, st) })
	}
}

// testPolicyStyle switches the rule's backend from A to B and back to A by
// replacing the policy file the way st does.
func testPolicyStyle(t *testing.T, st fileStyle) {
	backends := map[string]string{
		"A": startBackend(t, answerHTTP("A")).addr,
		"B": startBackend(t, answerHTTP("B")).addr,
	}
	var dir string
	var port int
	policyFor := func(name string) []namedFile {
		text := environment() + inbound("e2e", port, backends[name])
		return []namedFile{{"policy.hcl", []byte(text)}}
	}
	d := startWatched(t, 1, func(ports []int) string {
		dir, port = t.TempDir(), ports[0]
		st.setup(t, dir, policyFor("A"))
		return filepath.Join(dir, "policy.hcl")
	})
	cfg, addr := clientTLS(t), d.addr("127.0.0.1", 0)
	if got := mustProbe(t, cfg, addr).body; got != "A" {
		t.Fatalf("before any change: got body %q, want A", got)
	}

	for _, next := range []string{"B", "A"} {
		from := d.mark()
		st.update(t, dir, policyFor(next))
		took := d.waitBody(t, cfg, addr, next)
		l, _ := d.waitLine(t, from, "reload line", isReloaded)
		if l.str("trigger") != "file" || !slices.Equal(l.strs("changed"), []string{"e2e"}) {
			t.Errorf("reload line: got %v, want trigger file, changed [e2e]", l)
		}
		t.Logf("backend %s served %s after the change", next, took.Round(time.Millisecond))
	}
}

// testPairStyle rotates the server certificate and key twice by
// replacing both files the way st does. Where they change one after the
// other a reload may catch a certificate with the old key and be
// rejected; only the new serial reaching clients matters.
func testPairStyle(t *testing.T, st fileStyle) {
	backend := startBackend(t, answerHTTP("A"))
	pairs := []serverPair{issueServerPair(t), issueServerPair(t), issueServerPair(t)}
	var secret string
	d := startWatched(t, 1, func(ports []int) string {
		dir := t.TempDir()
		secret = filepath.Join(dir, "tls")
		if err := os.Mkdir(secret, 0o755); err != nil {
			t.Fatal(err)
		}
		st.setup(t, secret, pairs[0].files())
		file := filepath.Join(dir, "policy.hcl")
		writeFile(t, file, pairEnvironment(secret)+inbound("e2e", ports[0], backend.addr))
		return file
	})
	cfg, addr := clientTLS(t), d.addr("127.0.0.1", 0)
	if got := mustProbe(t, cfg, addr).serial; got != pairs[0].serial {
		t.Fatalf("before any change: got serial %s, want %s", got, pairs[0].serial)
	}

	for _, p := range pairs[1:] {
		from := d.mark()
		st.update(t, secret, p.files())
		took := d.waitSerial(t, cfg, addr, p.serial)
		l, _ := d.waitLine(t, from, "reload that rotates web", func(l logLine) bool {
			return isReloaded(l) && slices.Contains(l.strs("rotated"), "web")
		})
		if l.str("trigger") != "file" {
			t.Errorf("reload line: got trigger %q, want file", l.str("trigger"))
		}
		t.Logf("serial %s served %s after the change", p.serial, took.Round(time.Millisecond))
	}
}

// TestReloadUnchanged rewrites the policy with the same bytes (in place
// and by rename) and touches it: attlsd notices the writes, finds nothing
// new and reloads nothing. Then a burst of fifty writes gives one reload,
// or very few, not one per write.
func TestReloadUnchanged(t *testing.T) {
	a := startBackend(t, answerHTTP("A"))
	b := startBackend(t, answerHTTP("B"))
	var port int
	policyFor := func(backend, comment string) []byte {
		return []byte(environment() + inbound("e2e", port, backend) + comment)
	}
	d := startDaemon(t, "127.0.0.1", 1, func(p []int) string {
		port = p[0]
		return string(policyFor(a.addr, ""))
	})
	cfg, addr := clientTLS(t), d.addr("127.0.0.1", 0)

	// A first change shows the watch at work before anything is counted.
	same := policyFor(b.addr, "")
	renameOver(t, d.policy, same)
	d.waitBody(t, cfg, addr, "B")
	d.waitGeneration(t, 0, 2)

	// Each same-bytes write must be looked at (the debug line), and
	// change nothing.
	from := d.mark()
	writeInPlace(t, d.policy, same)
	at := waitUnchanged(t, d, from, "file", "same bytes written in place")
	renameOver(t, d.policy, same)
	at = waitUnchanged(t, d, at+1, "file", "same bytes saved by rename")
	runOK(t, needTool(t, "touch", "coreutils"), d.policy)
	// A touch gives no event worth a look, so nothing shows that attlsd
	// ignored it. Leave a wrongly triggered reload time to happen (more
	// than the 150 ms settle) before the next write, whose evaluation
	// then comes after it in the log.
	time.Sleep(500 * time.Millisecond)
	writeInPlace(t, d.policy, same)
	waitUnchanged(t, d, at+1, "file", "same bytes after a touch")

	if rs := d.reloadsSince(from); len(rs) != 0 {
		t.Errorf("reloads after unchanged writes and a touch: got %v, want none", rs)
	}
	if got := mustProbe(t, cfg, addr).body; got != "B" {
		t.Errorf("after unchanged writes: got body %q, want B", got)
	}

	// A burst: 49 writes that differ only in a comment, then the change.
	from = d.mark()
	for i := range 49 {
		writeInPlace(t, d.policy, policyFor(b.addr, fmt.Sprintf("# write %d\n", i)))
		time.Sleep(2 * time.Millisecond)
	}
	writeInPlace(t, d.policy, policyFor(a.addr, ""))
	d.waitBody(t, cfg, addr, "A")
	d.waitLine(t, from, "reload that changes e2e", func(l logLine) bool {
		return isReloaded(l) && slices.Contains(l.strs("changed"), "e2e")
	})
	if rs := d.reloadsSince(from); len(rs) > 3 {
		t.Errorf("reloads after a burst of 50 writes: got %d, want 1 (at most 3):\n%v", len(rs), rs)
	} else {
		t.Logf("a burst of 50 writes gave %d reload(s)", len(rs))
	}
}

// waitUnchanged waits for a look at the files, triggered by trigger, that
// found nothing new, at index from or later, and returns its index. A
// reload instead fails the test.
func waitUnchanged(t *testing.T, d *daemon, from int, trigger, what string) int {
	t.Helper()
	l, at := d.waitLine(t, from, "look at the "+what, func(l logLine) bool {
		return isReloaded(l) || l.str("message") == msgUnchanged && l.str("trigger") == trigger
	})
	if isReloaded(l) {
		t.Fatalf("after %s: got %v, want no reload", what, l)
	}
	return at
}

// TestReloadSlowWriter has a shell write the policy in two pieces into
// one open file, pausing longer than a burst of events takes to settle.
// The first piece alone is a valid policy that lacks rule "extra": it is
// never applied, so the extra port never stops serving, and the whole
// file is applied once the shell closed it.
func TestReloadSlowWriter(t *testing.T) {
	sh := needTool(t, "sh", "dash")
	a := startBackend(t, answerHTTP("A"))
	b := startBackend(t, answerHTTP("B"))
	var ports []int
	pieces := func(backend string) (head, tail string) {
		return environment() + inbound("e2e", ports[0], backend),
			inbound("extra", ports[1], a.addr)
	}
	d := startWatched(t, 2, func(p []int) string {
		ports = p
		head, tail := pieces(a.addr)
		file := filepath.Join(t.TempDir(), "policy.hcl")
		writeFile(t, file, head+tail)
		return file
	})
	cfg := clientTLS(t)

	dir := t.TempDir()
	head, tail := pieces(b.addr)
	writeFile(t, filepath.Join(dir, "head"), head)
	writeFile(t, filepath.Join(dir, "tail"), tail)
	from := d.mark()
	writer := exec.Command(sh, "-c", `{ cat "$1"; sleep 0.6; cat "$2"; } > "$3"`, "sh",
		filepath.Join(dir, "head"), filepath.Join(dir, "tail"), d.policy)
	if err := writer.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- writer.Wait() }()
	for writing := true; writing; {
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("slow writer: %v", err)
			}
			writing = false
		case <-time.After(50 * time.Millisecond):
			mustProbe(t, cfg, d.addr("127.0.0.1", 1))
		}
	}
	d.waitBody(t, cfg, d.addr("127.0.0.1", 0), "B")
	for _, l := range d.reloadsSince(from) {
		if slices.Contains(l.strs("removed"), "extra") {
			t.Errorf("reload line %v: applied the first piece alone", l)
		}
	}
}

// TestReloadRightAfterStart changes the policy the moment attlsd says it
// started, before any request: the change must not fall between the first
// load and the start of watching.
func TestReloadRightAfterStart(t *testing.T) {
	for _, watch := range []string{"auto", "poll"} {
		t.Run(watch, func(t *testing.T) {
			a := startBackend(t, answerHTTP("A"))
			b := startBackend(t, answerHTTP("B"))
			var port int
			d := startWatched(t, 1, func(p []int) string {
				port = p[0]
				file := filepath.Join(t.TempDir(), "policy.hcl")
				writeFile(t, file, environment()+inbound("e2e", port, a.addr))
				return file
			}, "--watch", watch)
			renameOver(t, d.policy, []byte(environment()+inbound("e2e", port, b.addr)))
			d.waitBody(t, clientTLS(t), d.addr("127.0.0.1", 0), "B")
		})
	}
}

// TestReloadSignal sends SIGHUPs one at a time, each giving a reload and
// the next generation, then a storm of SIGHUPs with the policy rewritten
// before each: whatever signals arrive during a reload, the last one is
// followed by a reload that reads the last policy. File watching is off,
// so only signals reload. Which signals land during a reload is up to the
// scheduler here; internal/reload's TestTriggerDuringReload holds a reload
// open to make that case certain.
func TestReloadSignal(t *testing.T) {
	a := startBackend(t, answerHTTP("A"))
	b := startBackend(t, answerHTTP("B"))
	var port int
	policyFor := func(backend, marker string) string {
		return environment() + inbound("e2e", port, backend) +
			inbound(marker, port, backend, `remote_addresses = ["192.0.2.1"]`, "priority = 2")
	}
	d := startWatched(t, 1, func(ports []int) string {
		port = ports[0]
		file := filepath.Join(t.TempDir(), "policy.hcl")
		writeFile(t, file, policyFor(a.addr, "m0"))
		return file
	}, "--watch", "off")
	cfg, addr := clientTLS(t), d.addr("127.0.0.1", 0)

	gen := d.generationNow()
	if gen != 1 {
		t.Fatalf("generation at start: got %d, want 1", gen)
	}
	for range 3 {
		from := d.mark()
		d.hup(t)
		l, _ := d.waitLine(t, from, "reload after SIGHUP", isReloaded)
		gen++
		if genOf(l) != gen || l.str("trigger") != "signal" ||
			l.str("message") != "policy reloaded; nothing changed" {
			t.Fatalf("reload line: got %v, want generation %d, trigger signal, nothing changed",
				l, gen)
		}
	}

	// The storm: each new policy, with its own marker rule, is followed
	// by three SIGHUPs back to back, so that most arrive during a reload.
	const storm = 30
	for i := 1; i <= storm; i++ {
		backend := a.addr
		if i == storm {
			backend = b.addr
		}
		renameOver(t, d.policy, []byte(policyFor(backend, fmt.Sprintf("m%d", i))))
		for range 3 {
			d.hup(t)
		}
	}
	last := fmt.Sprintf("m%d", storm)
	d.waitLine(t, 0, "reload that adds "+last, func(l logLine) bool {
		return isReloaded(l) && slices.Contains(l.strs("added"), last)
	})
	if got := mustProbe(t, cfg, addr).body; got != "B" {
		t.Errorf("after the storm: got body %q, want B", got)
	}
	checkGenerations(t, d)
	t.Logf("%d SIGHUPs in a row gave %d reloads", 3*storm, len(d.reloadsSince(0))-3)
}

// checkGenerations checks that every reload line has the generation
// after the previous one, and that every reload came from a signal.
func checkGenerations(t *testing.T, d *daemon) {
	t.Helper()
	want := uint64(2)
	for _, l := range d.reloadsSince(0) {
		if genOf(l) != want {
			t.Errorf("reload line: got generation %d, want %d: %v", genOf(l), want, l)
		}
		if l.str("trigger") != "signal" {
			t.Errorf("reload line with --watch off: got trigger %q, want signal", l.str("trigger"))
		}
		want = genOf(l) + 1
	}
}

// TestReloadRejected breaks the policy, the certificate and the key in
// turn: the reload is rejected with a file:line:col diagnostic, clients
// keep the running policy, and a correct file is then taken.
func TestReloadRejected(t *testing.T) {
	t.Run("policy-syntax", testRejectedSyntax)
	t.Run("certificate-garbage", func(t *testing.T) {
		testRejectedPair(t, "certificate", "server.pem", func(old, next serverPair) []namedFile {
			return []namedFile{{"server.pem", []byte("not a certificate\n")}}
		})
	})
	t.Run("key-mismatch", func(t *testing.T) {
		mismatch := func(old, next serverPair) []namedFile {
			return []namedFile{{"server-key.pem", next.key}}
		}
		testRejectedPair(t, "private_key", "does not match", mismatch)
	})
}

// testRejectedSyntax writes a policy with a syntax error.
func testRejectedSyntax(t *testing.T) {
	a := startBackend(t, answerHTTP("A"))
	b := startBackend(t, answerHTTP("B"))
	var port int
	d := startDaemon(t, "127.0.0.1", 1, func(p []int) string {
		port = p[0]
		return environment() + inbound("e2e", port, a.addr)
	})
	cfg, addr := clientTLS(t), d.addr("127.0.0.1", 0)

	broken := environment() + inbound("e2e", port, a.addr, "port = = "+itoa(port))
	from := d.mark()
	renameOver(t, d.policy, []byte(broken))
	checkRejected(t, d, from, lineWith(broken, "= ="), "Invalid expression")
	if got := mustProbe(t, cfg, addr).body; got != "A" {
		t.Errorf("after a rejected reload: got body %q, want A (the running policy)", got)
	}

	renameOver(t, d.policy, []byte(environment()+inbound("e2e", port, b.addr)))
	d.waitBody(t, cfg, addr, "B")
}

// testRejectedPair breaks the pair with the files bad returns, then
// installs the next pair.
func testRejectedPair(t *testing.T, attr, word string,
	bad func(old, next serverPair) []namedFile) {
	backend := startBackend(t, answerHTTP("A"))
	old, next := issueServerPair(t), issueServerPair(t)
	dir := t.TempDir()
	writePlain(t, dir, old.files())
	var text string
	d := startDaemon(t, "127.0.0.1", 1, func(p []int) string {
		text = pairEnvironment(dir) + inbound("e2e", p[0], backend.addr)
		return text
	})
	cfg, addr := clientTLS(t), d.addr("127.0.0.1", 0)

	from := d.mark()
	eachFile(renameOver)(t, dir, bad(old, next))
	checkRejected(t, d, from, lineWith(text, attr+" ="), word)
	if got := mustProbe(t, cfg, addr).serial; got != old.serial {
		t.Errorf("after a rejected reload: got serial %s, want %s (the running pair)",
			got, old.serial)
	}

	eachFile(renameOver)(t, dir, next.files())
	d.waitSerial(t, cfg, addr, next.serial)
}

// checkRejected waits for a rejected file-triggered reload at index from
// or later and checks the diagnostic before it: policy file, line, word.
func checkRejected(t *testing.T, d *daemon, from, line int, word string) {
	t.Helper()
	l, at := d.waitLine(t, from, "rejected reload", isMessage(msgRejectedDiags))
	if l.str("trigger") != "file" || l.str("level") != "error" {
		t.Errorf("rejection line: got %v, want level error, trigger file", l)
	}
	if genOf(l) != 1 {
		t.Errorf("rejection line: got generation %d, want 1 (the running one)", genOf(l))
	}
	checkDiagnostic(t, d.lines(0), at, d.policy, line, word)
}

// lineWith returns the 1-based number of the first line of text holding
// substr.
func lineWith(text, substr string) int {
	for i, l := range strings.Split(text, "\n") {
		if strings.Contains(l, substr) {
			return i + 1
		}
	}
	return 0
}

// TestReloadPorts adds a port (it starts accepting), removes one (it
// stops, while a connection opened on it keeps working until it closes),
// and adds a port another process holds (the reload is rejected with a
// diagnostic at that port's line, the other ports go on serving; once the
// port is free, SIGHUP binds it).
func TestReloadPorts(t *testing.T) {
	e := startBackend(t, echo)
	b := startBackend(t, answerHTTP("B"))
	c := startBackend(t, answerHTTP("C"))
	var ports []int
	rules := map[string]func() string{
		"a": func() string { return inbound("a", ports[0], e.addr) },
		"b": func() string { return inbound("b", ports[1], b.addr) },
	}
	policyOf := func(extra string, names ...string) []byte {
		text := environment()
		for _, n := range names {
			text += rules[n]()
		}
		return []byte(text + extra)
	}
	d := startWatched(t, 2, func(p []int) string {
		ports = p
		file := filepath.Join(t.TempDir(), "policy.hcl")
		writeFile(t, file, string(policyOf("", "a")))
		return file
	})
	cfg := clientTLS(t)
	addrA, addrB := d.addr("127.0.0.1", 0), d.addr("127.0.0.1", 1)

	old := dialTLS(t, addrA, cfg)
	echoRound(t, old, 1)

	from := d.mark()
	renameOver(t, d.policy, policyOf("", "a", "b"))
	l, _ := d.waitLine(t, from, "reload that adds b", isReloaded)
	if !slices.Equal(l.strs("added"), []string{"b"}) ||
		!slices.Contains(l.strs("listeners"), addrB) {
		t.Errorf("reload line: got %v, want added [b], listeners with %s", l, addrB)
	}
	if got := mustProbe(t, cfg, addrB).body; got != "B" {
		t.Errorf("added port %s: got body %q, want B", addrB, got)
	}

	from = d.mark()
	renameOver(t, d.policy, policyOf("", "b"))
	waitRefused(t, addrA)
	l, _ = d.waitLine(t, from, "reload that removes a", isReloaded)
	if !slices.Equal(l.strs("removed"), []string{"a"}) {
		t.Errorf("reload line: got removed %v, want [a]", l.strs("removed"))
	}
	echoRound(t, old, 2)
	client := old.LocalAddr().String()
	old.Close()
	if cl := d.closeLine(t, client); genOf(cl) != 1 || cl.str("rule") != "a" {
		t.Errorf("close line of the connection on the removed rule: got %v, "+
			"want generation 1, rule a", cl)
	}

	testPortTaken(t, d, cfg, addrB, func(port int) []byte {
		return policyOf(inbound("c", port, c.addr), "b")
	})
}

// testPortTaken adds a rule on a port this test holds.
func testPortTaken(t *testing.T, d *daemon, cfg *tls.Config, serving string,
	policyWith func(port int) []byte) {
	t.Helper()
	holder, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	taken := holder.Addr().String()
	port := holder.Addr().(*net.TCPAddr).Port

	from := d.mark()
	text := policyWith(port)
	renameOver(t, d.policy, text)
	_, at := d.waitLine(t, from, "rejected reload", isMessage(msgRejected))
	line := lineWith(string(text), "port = "+itoa(port))
	checkDiagnostic(t, d.lines(0), at, d.policy, line, taken+` for rule "c": `+
		"bind: address already in use")
	// Said once: the diagnostic, not again in the rejection line.
	var saying []string
	for _, l := range d.lines(from) {
		if s := l.String(); strings.Contains(s, "address already in use") {
			saying = append(saying, s)
		}
	}
	if len(saying) != 1 {
		t.Errorf("log lines naming the port in use: got %d, want 1:\n%s", len(saying),
			strings.Join(saying, "\n"))
	}
	if got := mustProbe(t, cfg, serving).body; got != "B" {
		t.Errorf("after the rejected reload, %s: got body %q, want B", serving, got)
	}

	holder.Close()
	from = d.mark()
	d.hup(t)
	d.waitLine(t, from, "reload that binds "+taken, func(l logLine) bool {
		return isReloaded(l) && slices.Contains(l.strs("listeners"), taken)
	})
	if got := mustProbe(t, cfg, taken).body; got != "C" {
		t.Errorf("freed port %s after SIGHUP: got body %q, want C", taken, got)
	}
}

// echoRound sends 16 KiB of pattern seed through an echoing connection
// and checks that the same bytes come back.
func echoRound(t *testing.T, c *tls.Conn, seed byte) {
	t.Helper()
	if err := echoChunk(c, pattern(16<<10, seed)); err != nil {
		t.Fatalf("echo through %s: %v", c.LocalAddr(), err)
	}
}

// echoChunk writes b to an echoing connection and reads it back.
func echoChunk(c *tls.Conn, b []byte) error {
	c.SetDeadline(time.Now().Add(ioTimeout))
	if _, err := c.Write(b); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	got := make([]byte, len(b))
	if _, err := io.ReadFull(c, got); err != nil {
		return fmt.Errorf("read back: %w", err)
	}
	if !bytes.Equal(got, b) {
		return errors.New("echoed bytes differ from those sent")
	}
	return nil
}

// TestReloadUnderLoad reloads the policy 100 times while 16 clients
// stream pattern data through an echo rule that stays, one connection
// after another, and three connections opened before the first reload
// stream all along. The reloads take turns: SIGHUP, an edit of an
// unrelated rule, a rule on another port added, then removed again, and
// the certificate rotated. Not one connection to the kept port may fail
// and not one byte may differ.
func TestReloadUnderLoad(t *testing.T) {
	const (
		clients   = 16
		longLived = 3
		reloads   = 100
		size      = 32 << 10
	)
	e := startBackend(t, echo)
	other := startBackend(t, answerHTTP("other"))
	pairDir := t.TempDir()
	writePlain(t, pairDir, issueServerPair(t).files())
	var ports []int
	policyFor := func(priority int, extra bool) string {
		text := pairEnvironment(pairDir) + inbound("stay", ports[0], e.addr) +
			inbound("other", ports[1], other.addr, "priority = "+itoa(priority))
		if extra {
			text += inbound("extra", ports[2], other.addr)
		}
		return text
	}
	d := startWatched(t, 3, func(p []int) string {
		ports = p
		file := filepath.Join(t.TempDir(), "policy.hcl")
		writeFile(t, file, policyFor(1, false))
		return file
	})
	cfg, addr := clientTLS(t), d.addr("127.0.0.1", 0)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	long := make([]*longConn, longLived)
	for i := range long {
		long[i] = &longConn{c: dialTLS(t, addr, cfg), seed: byte(100 + i)}
		wg.Add(1)
		go func() { defer wg.Done(); long[i].stream(stop) }()
	}
	var load loadStats
	for i := range clients {
		wg.Add(1)
		go func() { defer wg.Done(); load.run(cfg, addr, size, byte(i), stop) }()
	}

	start := time.Now()
	gen := d.generationNow()
	priority := 1
	for i := range reloads {
		from := d.mark()
		gen++
		switch i % 5 {
		case 0:
			d.hup(t)
		case 1:
			priority++
			renameOver(t, d.policy, []byte(policyFor(priority, false)))
		case 2:
			renameOver(t, d.policy, []byte(policyFor(priority, true)))
			d.waitGeneration(t, from, gen)
			mustProbe(t, cfg, d.addr("127.0.0.1", 2))
		case 3:
			renameOver(t, d.policy, []byte(policyFor(priority, false)))
			d.waitGeneration(t, from, gen)
			waitRefused(t, d.addr("127.0.0.1", 2))
		case 4:
			eachFile(renameOver)(t, pairDir, issueServerPair(t).files())
		}
		d.waitGeneration(t, from, gen)
	}
	took := time.Since(start)
	close(stop)
	wg.Wait()

	t.Logf("%d reloads in %s; %d connections of %d KiB each way, %d failed",
		reloads, took.Round(time.Millisecond), load.ok.Load(), size>>10, load.failed.Load())
	if n := load.failed.Load(); n > 0 {
		t.Errorf("connections that failed during reloads: got %d (first: %v), want 0",
			n, load.firstErr())
	}
	if load.ok.Load() < clients {
		t.Errorf("connections completed during reloads: got %d, want at least %d",
			load.ok.Load(), clients)
	}
	if rs := d.reloadsSince(0); !slices.ContainsFunc(rs, func(l logLine) bool {
		return slices.Contains(l.strs("rotated"), "web")
	}) {
		t.Errorf("reload lines: none rotated web; got %v", rs)
	}
	for _, lc := range long {
		lc.check(t, d)
	}
}

// loadStats counts the short connections of TestReloadUnderLoad.
type loadStats struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	first      error
}

// run opens connections to addr one after another until stop closes,
// each sending size bytes of pattern and checking the echo.
func (s *loadStats) run(cfg *tls.Config, addr string, size int64, seed byte, stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		default:
		}
		if err := echoStream(cfg, addr, size, seed); err != nil {
			s.failed.Add(1)
			s.mu.Lock()
			if s.first == nil {
				s.first = err
			}
			s.mu.Unlock()
			continue
		}
		s.ok.Add(1)
	}
}

func (s *loadStats) firstErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.first
}

// echoStream sends size bytes of pattern seed through a new connection to
// an echo backend, half-closes, and compares what comes back by SHA-256.
func echoStream(cfg *tls.Config, addr string, size int64, seed byte) error {
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(dialer, "tcp", addr, cfg)
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(ioTimeout))
	sent := make(chan digest, 1)
	go func() {
		sum, err := writePattern(c, size, seed)
		if err == nil {
			err = c.CloseWrite()
		}
		sent <- digest{n: size, sum: sum, err: err}
	}()
	got := newDigest(hashAll(c))
	want := <-sent
	if want.err != nil {
		return fmt.Errorf("send: %w", want.err)
	}
	if !got.equal(want) {
		return fmt.Errorf("echo: got %v, want %v", got, want)
	}
	return nil
}

// longConn is a connection that streams from before the first reload to
// after the last.
type longConn struct {
	c      *tls.Conn
	seed   byte
	rounds int
	err    error
}

// stream echoes 16 KiB chunks until stop closes, then one more chunk,
// after the last reload, then half-closes and expects the echo's EOF.
func (lc *longConn) stream(stop <-chan struct{}) {
	for lc.err == nil {
		select {
		case <-stop:
			lc.finish()
			return
		default:
		}
		lc.round()
	}
}

// round echoes the next chunk.
func (lc *longConn) round() {
	lc.rounds++
	if err := echoChunk(lc.c, pattern(16<<10, lc.seed+byte(lc.rounds))); err != nil {
		lc.err = fmt.Errorf("round %d: %w", lc.rounds, err)
	}
}

// finish echoes a last chunk, half-closes and waits for the echo's EOF.
func (lc *longConn) finish() {
	if lc.round(); lc.err != nil {
		return
	}
	if err := lc.c.CloseWrite(); err != nil {
		lc.err = fmt.Errorf("half-close: %w", err)
		return
	}
	if n, err := io.Copy(io.Discard, lc.c); err != nil || n != 0 {
		lc.err = fmt.Errorf("after half-close: got %d bytes, %v; want EOF", n, err)
	}
}

// check reports the connection's errors and checks that attlsd logged it
// under the generation it started in.
func (lc *longConn) check(t *testing.T, d *daemon) {
	t.Helper()
	client := lc.c.LocalAddr().String()
	if lc.err != nil {
		t.Errorf("long-lived connection %s: %v", client, lc.err)
		return
	}
	lc.c.Close()
	if l := d.closeLine(t, client); genOf(l) != 1 || l.str("reason") != "closed" {
		t.Errorf("long-lived connection %s, %d rounds: got close line %v, "+
			"want generation 1, reason closed", client, lc.rounds, l)
	}
}

// TestReloadLeaks reloads 300 times, on SIGHUP and on edits that add and
// remove a listener, with a request now and then, and checks that
// attlsd's open file descriptors come back to their number and its
// resident memory stays within a bound.
func TestReloadLeaks(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	const (
		reloads  = 300
		fdSlack  = 2
		rssBound = 20 << 10 // KiB
	)
	backend := startBackend(t, answerHTTP("A"))
	var ports []int
	policyFor := func(extra bool) string {
		text := environment() + inbound("e2e", ports[0], backend.addr)
		if extra {
			text += inbound("extra", ports[1], backend.addr)
		}
		return text
	}
	d := startWatched(t, 2, func(p []int) string {
		ports = p
		file := filepath.Join(t.TempDir(), "policy.hcl")
		writeFile(t, file, policyFor(false))
		return file
	})
	cfg, addr := clientTLS(t), d.addr("127.0.0.1", 0)
	pid := d.cmd.Process.Pid

	requests := 0
	cycle := func(n int) {
		for i := range n {
			from, gen := d.mark(), d.generationNow()
			if i%25 == 0 {
				renameOver(t, d.policy, []byte(policyFor(i%50 == 0)))
			} else {
				d.hup(t)
			}
			d.waitGeneration(t, from, gen+1)
			if i%10 == 0 {
				mustProbe(t, cfg, addr)
				requests++
			}
		}
		// Requests are done when attlsd has logged them closed.
		d.waitLog(t, logTimeout, 0, "close lines", func([]logLine) bool {
			return len(d.closeLines()) >= requests
		})
	}

	cycle(50) // warm up: pools, TLS, the runtime's heap
	fds, rss := openFDs(t, pid), rssKiB(t, pid)
	start := time.Now()
	cycle(reloads)
	fdsAfter, rssAfter := openFDs(t, pid), rssKiB(t, pid)
	t.Logf("%d reloads in %s: fds %d -> %d, VmRSS %d -> %d KiB", reloads,
		time.Since(start).Round(time.Millisecond), fds, fdsAfter, rss, rssAfter)

	if fdsAfter > fds+fdSlack {
		t.Errorf("open fds after %d reloads: got %d, want at most %d (%d before)",
			reloads, fdsAfter, fds+fdSlack, fds)
	}
	if rssAfter > rss+rssBound {
		t.Errorf("VmRSS after %d reloads: got %d KiB, want at most %d KiB (%d before)",
			reloads, rssAfter, rss+rssBound, rss)
	}
}

// TestReloadPoll runs attlsd with --watch poll: a changed policy is
// applied with trigger "poll", and a touched one is looked at and left.
func TestReloadPoll(t *testing.T) {
	a := startBackend(t, answerHTTP("A"))
	b := startBackend(t, answerHTTP("B"))
	var port int
	d := startWatched(t, 1, func(p []int) string {
		port = p[0]
		file := filepath.Join(t.TempDir(), "policy.hcl")
		writeFile(t, file, environment()+inbound("e2e", port, a.addr))
		return file
	}, "--watch", "poll")
	cfg, addr := clientTLS(t), d.addr("127.0.0.1", 0)
	if l, _ := d.log.find(isMessage("attlsd started")); l.str("watch") != "poll" {
		t.Errorf("start line: got watch %q, want poll", l.str("watch"))
	}

	// The second change comes after attlsd applied the first, so only a
	// poll can find it, whatever found the first.
	backends := map[string]string{"A": a.addr, "B": b.addr}
	for _, next := range []string{"B", "A"} {
		from := d.mark()
		renameOver(t, d.policy, []byte(environment()+inbound("e2e", port, backends[next])))
		took := d.waitBody(t, cfg, addr, next)
		l, _ := d.waitLine(t, from, "reload line", isReloaded)
		if l.str("trigger") != "poll" || !slices.Equal(l.strs("changed"), []string{"e2e"}) {
			t.Errorf("reload line: got %v, want trigger poll, changed [e2e]", l)
		}
		t.Logf("polling applied backend %s in %s", next, took.Round(time.Millisecond))
	}

	from := d.mark()
	runOK(t, needTool(t, "touch", "coreutils"), d.policy)
	waitUnchanged(t, d, from, "poll", "touch")
}
