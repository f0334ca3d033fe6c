package policy

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/attlsd/attlsd/certs"
)

const diffBase = `
environment "web" {
  certificate = "certs/server.pem"
  private_key = "certs/server-key.pem"
}
environment "client" {
  trust = ["certs/ca.pem"]
}
inbound "kept" {
  port        = 8443
  environment = "web"
  backend     = "127.0.0.1:9080"
}
inbound "moved" {
  port        = 8444
  environment = "web"
  backend     = "127.0.0.1:9081"
}
outbound "gone" {
  port        = 15003
  endpoint    = "localhost:8443"
  environment = "client"
}
`

const diffNext = `
environment "web" {
  certificate = "certs/server.pem"
  private_key = "certs/server-key.pem"
}
environment "client" {
  trust = ["certs/ca.pem"]
}
inbound "kept" {
  port        = 8443
  environment = "web"
  backend     = "127.0.0.1:9080"
}
inbound "moved" {
  port        = 8444
  environment = "web"
  backend     = "127.0.0.1:9099"
}
outbound "new" {
  port        = 15004
  endpoint    = "localhost:8443"
  environment = "client"
}
`

// loadPolicyText loads src as dir/policy.hcl.
func loadPolicyText(t *testing.T, dir, src string) *Policy {
	t.Helper()
	file := filepath.Join(dir, "policy.hcl")
	writeTestFile(t, file, []byte(src), 0o644)
	p, diags := Load(file)
	if diags.HasErrors() {
		t.Fatal(FormatDiagnostics(diags))
	}
	return p
}

func loadText(t *testing.T, dir, src string) *Policy {
	t.Helper()
	file := filepath.Join(dir, "policy.hcl")
	writeTestFile(t, file, []byte(src), 0o644)
	p, files, diags := LoadFiles(file)
	if diags.HasErrors() {
		t.Fatal(FormatDiagnostics(diags))
	}
	want := []string{file, filepath.Join(dir, "certs/server.pem"),
		filepath.Join(dir, "certs/server-key.pem"), filepath.Join(dir, "certs/ca.pem")}
	if !slices.Equal(files, want) || !slices.Equal(p.Files, want) {
		t.Errorf("files: got %v, want %v", files, want)
	}
	return p
}

func TestDiff(t *testing.T) {
	dir := testDir(t)
	base := loadText(t, dir, diffBase)
	same := loadText(t, dir, diffBase)
	if base.Digest != same.Digest {
		t.Error("the same files twice: digests differ")
	}
	if c := Diff(base, same); !c.Empty() {
		t.Errorf("Diff of the same files: %+v, want nothing", c)
	}

	next := loadText(t, dir, diffNext)
	c := Diff(base, next)
	if !slices.Equal(c.Added, []string{"new"}) || !slices.Equal(c.Removed, []string{"gone"}) ||
		!slices.Equal(c.Changed, []string{"moved"}) || len(c.Rotated) != 0 {
		t.Errorf("Diff: %+v; want added [new], removed [gone], changed [moved]", c)
	}

	// A new certificate under the same file name: every rule of the
	// environment changes, and the environment is reported rotated.
	certDir := filepath.Join(dir, "certs")
	for _, f := range []string{"ca.pem", "ca-key.pem", "server.pem", "server-key.pem",
		"client.pem", "client-key.pem"} {
		os.Remove(filepath.Join(certDir, f))
	}
	if _, err := certs.InitDev(certDir, nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	rotated := loadText(t, dir, diffBase)
	if rotated.Digest == base.Digest {
		t.Error("rotated certificates: digest unchanged")
	}
	c = Diff(base, rotated)
	if !slices.Equal(c.Rotated, []string{"web"}) ||
		!slices.Equal(c.Changed, []string{"gone", "kept", "moved"}) {
		t.Errorf("Diff after rotation: %+v; want rotated [web], all rules changed", c)
	}
}

// inheritText is a policy whose parts the TestInherit cases vary.
type inheritText struct {
	cert, key, trust, auth, backend, priority, serverName, endpoint string
}

func (x inheritText) String() string {
	return fmt.Sprintf(`
environment "web" {
  certificate = %q
  private_key = %q
  trust       = [%q]
}
environment "client" {
  trust = [%q]
}
inbound "in" {
  port        = 8443
  environment = "web"
  client_auth = %q
  backend     = %q
  priority    = %s
}
inbound "in2" {
  port        = 8444
  environment = "web"
  client_auth = %q
  backend     = "127.0.0.1:9090"
}
outbound "out" {
  port        = 15003
  endpoint    = %q
  server_name = %q
  environment = "client"
}
`, x.cert, x.key, x.trust, x.trust, x.auth, x.backend, x.priority, x.auth, x.endpoint,
		x.serverName)
}

// TestInherit: a reload keeps a rule's TLS configuration, and so its
// ticket keys or session cache, unless what shapes that configuration
// changed: the environment's certificate or trust, client_auth, or the
// server name.
func TestInherit(t *testing.T) {
	dir := testDir(t)
	same, err := os.ReadFile(filepath.Join(dir, "certs/server.pem"))
	if err != nil {
		t.Fatal(err)
	}
	writeTestFile(t, filepath.Join(dir, "certs/same.pem"), same, 0o644)
	if _, err := certs.InitDev(filepath.Join(dir, "other"), nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	base := inheritText{cert: "certs/server.pem", key: "certs/server-key.pem", trust: "certs/ca.pem", auth: "none",
		backend: "127.0.0.1:9080", priority: "1", serverName: "localhost",
		endpoint: "localhost:8443"}
	tests := []struct {
		name      string
		change    func(x *inheritText)
		keepIn    bool // rules "in" and "in2" keep theirs
		keepOut   bool // rule "out" keeps its own
		shareWith bool // "in" and "in2" share one configuration
	}{
		{"nothing", func(*inheritText) {}, true, true, true},
		{"backend", func(x *inheritText) { x.backend = "127.0.0.1:9099" }, true, true, true},
		{"priority", func(x *inheritText) { x.priority = "7" }, true, true, true},
		{"endpoint", func(x *inheritText) { x.endpoint = "localhost:9443" }, true, true, true},
		{"same certificate in another file",
			func(x *inheritText) { x.cert = "certs/same.pem" }, true, true, true},
		{"certificate", func(x *inheritText) {
			x.cert, x.key = "other/server.pem", "other/server-key.pem"
		}, false, true, true},
		{"trust", func(x *inheritText) { x.trust = "certs/server.pem" }, false, false, true},
		{"client_auth", func(x *inheritText) { x.auth = "full" }, false, true, true},
		{"server_name", func(x *inheritText) { x.serverName = "127.0.0.1" }, true, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prev := loadPolicyText(t, dir, base.String())
			x := base
			tt.change(&x)
			next := loadPolicyText(t, dir, x.String())
			next.Inherit(prev)
			got, old := next.rulesByName(), prev.rulesByName()
			for _, name := range []string{"in", "in2"} {
				if kept := got[name].TLSConfig == old[name].TLSConfig; kept != tt.keepIn {
					t.Errorf("rule %q kept its TLS configuration: got %t, want %t",
						name, kept, tt.keepIn)
				}
			}
			if kept := got["out"].TLSConfig == old["out"].TLSConfig; kept != tt.keepOut {
				t.Errorf("rule \"out\" kept its TLS configuration: got %t, want %t",
					kept, tt.keepOut)
			}
			if shared := got["in"].TLSConfig == got["in2"].TLSConfig; shared != tt.shareWith {
				t.Errorf("rules of one environment and client_auth share a configuration: "+
					"got %t, want %t", shared, tt.shareWith)
			}
		})
	}
}
