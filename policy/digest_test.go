package policy

import (
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

func TestInherit(t *testing.T) {
	dir := testDir(t)
	base := loadText(t, dir, diffBase)
	next := loadText(t, dir, diffNext)
	next.Inherit(base)
	byName := next.rulesByName()
	old := base.rulesByName()
	if byName["kept"].TLSConfig != old["kept"].TLSConfig {
		t.Error("unchanged rule: TLS configuration not inherited")
	}
	if byName["moved"].TLSConfig == old["moved"].TLSConfig {
		t.Error("changed rule: inherited the old TLS configuration")
	}
}
