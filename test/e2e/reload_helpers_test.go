package e2e

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// applyTimeout bounds how long a change may take to reach clients. attlsd
// waits 150 ms for a burst of file events to settle and retries a failed
// reload once after 1 s; the rest is margin for a loaded machine.
const applyTimeout = 3 * time.Second

// startWatched writes a policy with write, for nports fresh ports on
// 127.0.0.1, and runs attlsd on the file write returns, with args added
// to its command line. It retries with other ports when one was taken.
// attlsd is stopped when the test ends.
func startWatched(t *testing.T, nports int, write func(ports []int) string,
	args ...string) *daemon {
	t.Helper()
	for try := 1; ; try++ {
		ports := freePorts(t, "127.0.0.1", nports)
		file := write(ports)
		d, err := launchWith(file, ports, args...)
		if err == nil {
			t.Cleanup(func() { d.stop(t) })
			return d
		}
		if !errors.Is(err, errAddrInUse) || try == bindRetries {
			t.Fatalf("start attlsd: %v", err)
		}
	}
}

// launchWith is launchDaemon with extra command-line arguments.
func launchWith(file string, ports []int, args ...string) (*daemon, error) {
	argv := append([]string{"run", "--policy", file, "--log-level", "debug"}, args...)
	cmd := exec.Command(attlsdBin, argv...)
	cmd.Env = binEnv()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	d := &daemon{cmd: cmd, ports: ports, log: newLogSink(stderr),
		policy: file, exited: make(chan struct{})}
	go func() {
		<-d.log.eof
		d.err = cmd.Wait()
		close(d.exited)
	}()
	if _, err := d.log.wait(startTimeout, d.exited, isMessage("attlsd started")); err != nil {
		d.kill()
		if strings.Contains(d.log.text(), "address already in use") {
			return nil, errAddrInUse
		}
		return nil, fmt.Errorf("%w; attlsd said:\n%s", err, d.log.text())
	}
	return d, nil
}

// hup sends SIGHUP to attlsd.
func (d *daemon) hup(t *testing.T) {
	t.Helper()
	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatalf("SIGHUP: %v", err)
	}
}

// lines returns a copy of the JSON lines logged so far, from index from
// on.
func (d *daemon) lines(from int) []logLine {
	d.log.mu.Lock()
	defer d.log.mu.Unlock()
	return slices.Clone(d.log.lines[min(from, len(d.log.lines)):])
}

// mark is the index the next JSON line will have.
func (d *daemon) mark() int {
	d.log.mu.Lock()
	defer d.log.mu.Unlock()
	return len(d.log.lines)
}

// waitLog waits until cond holds for the lines logged from index from on,
// and returns them; it fails the test after timeout.
func (d *daemon) waitLog(t *testing.T, timeout time.Duration, from int, what string,
	cond func([]logLine) bool) []logLine {
	t.Helper()
	deadline := time.After(timeout)
	for {
		d.log.mu.Lock()
		changed := d.log.changed
		d.log.mu.Unlock()
		if ls := d.lines(from); cond(ls) {
			return ls
		}
		select {
		case <-changed:
		case <-d.exited:
			t.Fatalf("attlsd exited while waiting for %s\nattlsd log:\n%s", what, d.log.text())
		case <-deadline:
			t.Fatalf("no %s within %s\nattlsd log:\n%s", what, timeout, d.log.text())
		}
	}
}

// waitLine waits for a line at index from or later that matches, and
// returns it with its index.
func (d *daemon) waitLine(t *testing.T, from int, what string,
	match func(logLine) bool) (logLine, int) {
	t.Helper()
	var found logLine
	at := -1
	d.waitLog(t, logTimeout, from, what, func(ls []logLine) bool {
		for i, l := range ls {
			if match(l) {
				found, at = l, from+i
				return true
			}
		}
		return false
	})
	return found, at
}

// isReloaded matches "policy reloaded" and "policy reloaded; nothing
// changed".
func isReloaded(l logLine) bool {
	return strings.HasPrefix(l.str("message"), "policy reloaded")
}

// genOf is a line's generation field.
func genOf(l logLine) uint64 { return uint64(l.num("generation")) }

// generationNow is the generation of the newest "attlsd started" or
// reload line.
func (d *daemon) generationNow() uint64 {
	ls := d.lines(0)
	for i := len(ls) - 1; i >= 0; i-- {
		if isReloaded(ls[i]) || ls[i].str("message") == "attlsd started" {
			return genOf(ls[i])
		}
	}
	return 0
}

// waitGeneration waits for a reload line of generation gen or later, at
// index from or later.
func (d *daemon) waitGeneration(t *testing.T, from int, gen uint64) logLine {
	t.Helper()
	l, _ := d.waitLine(t, from, fmt.Sprintf("reload to generation %d", gen),
		func(l logLine) bool { return isReloaded(l) && genOf(l) >= gen })
	return l
}

// reloadsSince returns the reload lines logged at index from or later.
func (d *daemon) reloadsSince(from int) []logLine {
	var out []logLine
	for _, l := range d.lines(from) {
		if isReloaded(l) {
			out = append(out, l)
		}
	}
	return out
}

// strs returns a list field as strings.
func (l logLine) strs(key string) []string {
	list, _ := l[key].([]any)
	var out []string
	for _, v := range list {
		s, _ := v.(string)
		out = append(out, s)
	}
	return out
}

// diagRE splits a diagnostic log message: file:line:col: Summary: detail.
var diagRE = regexp.MustCompile(`^(.+):(\d+):(\d+): ([^:]+): (.+)$`)

// checkDiagnostic checks that the error lines just before the rejection
// at index at include one for file at line, col 1 or more, whose message
// mentions word.
func checkDiagnostic(t *testing.T, ls []logLine, at int, file string, line int, word string) {
	t.Helper()
	var seen []string
	for i := at - 1; i >= 0 && ls[i].str("level") == "error"; i-- {
		msg := ls[i].str("message")
		seen = append(seen, msg)
		m := diagRE.FindStringSubmatch(msg)
		if m == nil || m[1] != file || m[2] != strconv.Itoa(line) {
			continue
		}
		if col, _ := strconv.Atoi(m[3]); col < 1 {
			t.Errorf("diagnostic %q: column %s, want 1 or more", msg, m[3])
		}
		if !strings.Contains(msg, word) {
			t.Errorf("diagnostic %q: want it to mention %q", msg, word)
		}
		return
	}
	t.Errorf("diagnostics before the rejection: got %q, want one at %s:%d:COL: Summary: detail",
		seen, file, line)
}

// probe is what one HTTPS request through attlsd saw.
type probe struct {
	body   string // the backend's answer
	serial string // the server certificate's serial number, in hex
}

// probeOnce makes one HTTPS request to addr and reads the answer to its end.
// cfg has no session cache, so every handshake shows the certificate.
func probeOnce(cfg *tls.Config, addr string) (probe, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return probe{}, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(ioTimeout))
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"); err != nil {
		return probe{}, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return probe{}, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return probe{}, err
	}
	serial := c.ConnectionState().PeerCertificates[0].SerialNumber.Text(16)
	return probe{body: string(body), serial: serial}, nil
}

// waitServes makes requests to addr until one sees what ok accepts, and
// returns how long that took. Every request must succeed: a reload never
// refuses a client on a kept port. It fails the test after applyTimeout.
func (d *daemon) waitServes(t *testing.T, cfg *tls.Config, addr, what string,
	ok func(probe) bool) time.Duration {
	t.Helper()
	start := time.Now()
	var last probe
	for time.Since(start) < applyTimeout {
		p, err := probeOnce(cfg, addr)
		if err != nil {
			t.Fatalf("request to %s while waiting for %s: %v\nattlsd log:\n%s",
				addr, what, err, d.log.text())
		}
		if ok(p) {
			return time.Since(start)
		}
		last = p
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s: got body %q, serial %s after %s, want %s\nattlsd log:\n%s",
		addr, last.body, last.serial, applyTimeout, what, d.log.text())
	return 0
}

// waitBody waits until requests to addr get body.
func (d *daemon) waitBody(t *testing.T, cfg *tls.Config, addr, body string) time.Duration {
	t.Helper()
	return d.waitServes(t, cfg, addr, "body "+strconv.Quote(body),
		func(p probe) bool { return p.body == body })
}

// waitSerial waits until requests to addr see the certificate serial.
func (d *daemon) waitSerial(t *testing.T, cfg *tls.Config, addr, serial string) time.Duration {
	t.Helper()
	return d.waitServes(t, cfg, addr, "certificate serial "+serial,
		func(p probe) bool { return p.serial == serial })
}

// mustProbe makes one request to addr and fails the test if it fails.
func mustProbe(t *testing.T, cfg *tls.Config, addr string) probe {
	t.Helper()
	p, err := probeOnce(cfg, addr)
	if err != nil {
		t.Fatalf("request to %s: %v", addr, err)
	}
	return p
}

// waitRefused waits until addr refuses TCP connections.
func waitRefused(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(applyTimeout)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if errors.Is(err, syscall.ECONNREFUSED) {
			return
		}
		if err == nil {
			c.Close()
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s still accepts connections after %s", addr, applyTimeout)
}

// serverPair is a server certificate for localhost, issued by the
// development CA, and its key, both in PEM.
type serverPair struct {
	cert, key []byte
	serial    string // hex
}

// issueServerPair signs a new server certificate with the development CA.
// Each has its own key and serial number.
func issueServerPair(t *testing.T) serverPair {
	t.Helper()
	ca, caKey := loadDevCA(t)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial.Add(serial, big.NewInt(1)),
		Subject:      pkix.Name{CommonName: "attlsd reload test server"},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return serverPair{
		cert:   pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		key:    pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}),
		serial: tmpl.SerialNumber.Text(16),
	}
}

// loadDevCA reads the development CA certificate and key.
func loadDevCA(t *testing.T) (*x509.Certificate, any) {
	t.Helper()
	cert, err := x509.ParseCertificate(readPEMBlock(t, filepath.Join(certDir, "ca.pem")))
	if err != nil {
		t.Fatal(err)
	}
	key, err := x509.ParsePKCS8PrivateKey(readPEMBlock(t, filepath.Join(certDir, "ca-key.pem")))
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

// readPEMBlock returns the bytes of the first PEM block in file.
func readPEMBlock(t *testing.T, file string) []byte {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("no PEM block in %s", file)
	}
	return blk.Bytes
}

// files returns the pair as the files server.pem and server-key.pem, in
// the order a person would replace them: certificate first.
func (p serverPair) files() []namedFile {
	return []namedFile{{"server.pem", p.cert}, {"server-key.pem", p.key}}
}

// pairEnvironment is the "web" environment with the certificate and key
// in dir; attrs add to or override its other settings.
func pairEnvironment(dir string, attrs ...string) string {
	return environment(append([]string{
		"certificate = " + quote(filepath.Join(dir, "server.pem")),
		"private_key = " + quote(filepath.Join(dir, "server-key.pem"))}, attrs...)...)
}

// namedFile is one file of a folder's content.
type namedFile struct {
	name string
	data []byte
}

// fileStyle is one way files get replaced on a live system: by an editor,
// a shell command, a configuration tool or Kubernetes.
type fileStyle struct {
	name string
	// setup lays the files out in dir; update replaces them with new
	// content, one file after another unless the style swaps them at once.
	setup, update layFunc
}

// layFunc puts files into dir.
type layFunc func(t *testing.T, dir string, files []namedFile)

// fileStyles are the ways a policy or a certificate gets replaced.
var fileStyles = []fileStyle{
	{"in-place", writePlain, eachFile(writeInPlace)},
	{"editor-rename", writePlain, eachFile(renameOver)},
	{"mv-from-elsewhere", writePlain, eachFile(mvOver)},
	{"delete-create", writePlain, eachFile(deleteCreate)},
	{"sed-i", writePlain, eachFile(sedInPlace)},
	{"configmap", configMapSetup, configMapUpdate},
}

// writePlain writes the files into dir, mode 0600 (keys must not be
// readable by others).
func writePlain(t *testing.T, dir string, files []namedFile) {
	t.Helper()
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(dir, f.name), f.data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// eachFile makes an update that replaces the files one after another.
func eachFile(replace func(t *testing.T, path string, data []byte)) layFunc {
	return func(t *testing.T, dir string, files []namedFile) {
		t.Helper()
		for _, f := range files {
			replace(t, filepath.Join(dir, f.name), f.data)
		}
	}
}

// writeInPlace truncates the file and writes into the same inode, as
// "cat new > file" does.
func writeInPlace(t *testing.T, path string, data []byte) {
	t.Helper()
	before := inodeOf(t, path)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	if after := inodeOf(t, path); after != before {
		t.Fatalf("in-place write: inode changed from %d to %d", before, after)
	}
}

// inodeOf returns the inode number of path.
func inodeOf(t *testing.T, path string) uint64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

// renameOver writes a temporary file beside path and renames it over
// path, as editors save.
func renameOver(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// mvOver writes the new file in another folder and moves it over path
// with mv.
func mvOver(t *testing.T, path string, data []byte) {
	t.Helper()
	src := filepath.Join(t.TempDir(), filepath.Base(path))
	if err := os.WriteFile(src, data, 0o600); err != nil {
		t.Fatal(err)
	}
	runOK(t, needTool(t, "mv", "coreutils"), "-f", src, path)
}

// deleteCreate removes the file, then writes a new one at the same path.
func deleteCreate(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// sedInPlace rewrites the file with sed -i, which writes a temporary file
// beside it and renames it over: every line is deleted and the new
// content read in after the last one.
func sedInPlace(t *testing.T, path string, data []byte) {
	t.Helper()
	src := filepath.Join(t.TempDir(), "new")
	if err := os.WriteFile(src, data, 0o600); err != nil {
		t.Fatal(err)
	}
	runOK(t, needTool(t, "sed", "sed"), "-i", "-e", "$r "+src, "-e", "d", path)
}

// runOK runs a command and fails the test unless it exits 0.
func runOK(t *testing.T, name string, args ...string) {
	t.Helper()
	if _, stderr, code := run(t, "", name, args...); code != 0 {
		t.Fatalf("%s %q: exit %d: %s", name, args, code, stderr)
	}
}

// configMapSetup lays the files out as Kubernetes mounts a ConfigMap or
// Secret: each name is a link to ..data/name, and ..data a link to a
// timestamped folder holding the files.
func configMapSetup(t *testing.T, dir string, files []namedFile) {
	t.Helper()
	stamp := newStampFolder(t, dir, files)
	if err := os.Symlink(stamp, filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		link := filepath.Join(dir, f.name)
		if err := os.Symlink(filepath.Join("..data", f.name), link); err != nil {
			t.Fatal(err)
		}
	}
}

// configMapUpdate replaces every file at once, as the kubelet does: a new
// timestamped folder, a ..data_tmp link to it renamed over ..data, then
// the old folder removed.
func configMapUpdate(t *testing.T, dir string, files []namedFile) {
	t.Helper()
	data := filepath.Join(dir, "..data")
	old, err := os.Readlink(data)
	if err != nil {
		t.Fatal(err)
	}
	stamp := newStampFolder(t, dir, files)
	tmp := filepath.Join(dir, "..data_tmp")
	if err := os.Symlink(stamp, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, data); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, old)); err != nil {
		t.Fatal(err)
	}
}

// newStampFolder writes the files into a new folder of dir named like
// the kubelet's, ..2026_12_03_10_20_30.123456789, and returns its name.
func newStampFolder(t *testing.T, dir string, files []namedFile) string {
	t.Helper()
	for {
		name := time.Now().UTC().Format("..2006_01_02_15_04_05.000000000")
		err := os.Mkdir(filepath.Join(dir, name), 0o755)
		if errors.Is(err, os.ErrExist) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		writePlain(t, filepath.Join(dir, name), files)
		return name
	}
}

// openFDs counts the open file descriptors of process pid.
func openFDs(t *testing.T, pid int) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// rssKiB returns the resident set size of process pid in KiB.
func rssKiB(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb := strings.TrimSuffix(strings.TrimSpace(rest), "kB")
			n, err := strconv.Atoi(strings.TrimSpace(kb))
			if err != nil {
				t.Fatalf("VmRSS %q: %v", line, err)
			}
			return n
		}
	}
	t.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}
