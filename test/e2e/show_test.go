package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/attlsd/attlsd/policy"
)

// showPolicy has two inbound rules sharing a port, listed against their
// match order, and one outbound rule of each mode, with and without
// limits.
const showPolicy = `environment "web" {
  certificate = "certs/server.pem"
  private_key = "certs/server-key.pem"
  trust       = ["certs/ca.pem"]
}

environment "client" {
  trust = ["certs/ca.pem"]
}

inbound "low" {
  port        = 8443
  address     = "127.0.0.1"
  environment = "web"
  backend     = "127.0.0.1:9080"
}

inbound "high" {
  port             = 8443
  address          = "127.0.0.1"
  remote_addresses = ["10.0.0.0/8"]
  priority         = 10
  environment      = "web"
  client_auth      = "required"
  backend          = "unix:/run/app.sock"
  max_connections  = 25
  idle_timeout     = "5m"
}

outbound "api" {
  port               = 15003
  endpoint           = "localhost:8443"
  environment        = "client"
  half_close_timeout = "10s"
}

outbound "web-any" {
  remote_ports     = 443
  remote_addresses = "any"
  environment      = "client"
}

intercept "netfilter" {
  port    = 15001
  address = "127.0.0.1"
}
`

// TestShowText prints the text view: rules in match order, defaults
// spelled out, nothing on stderr.
func TestShowText(t *testing.T) {
	file := showFile(t, showPolicy)
	stdout, stderr, code := run(t, "", attlsdBin, "show", file)
	if code != 0 || stderr != "" {
		t.Fatalf("attlsd show: exit %d, stderr %q; want 0 and nothing", code, stderr)
	}
	for _, want := range []string{
		"policy " + file,
		"  1. high\n",
		"  2. low\n",
		"    max_connections      25\n",
		"    max_connections      unlimited\n",
		"    idle_timeout         5m\n",
		"    half_close_timeout   1m\n",
		"    half_close_timeout   10s\n",
		"  127.0.0.1:8443   inbound              high, low\n",
		"  127.0.0.1:15001  intercept netfilter  web-any\n",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, stdout)
		}
	}
	if strings.Index(stdout, "1. high") > strings.Index(stdout, "2. low") {
		t.Errorf("rules out of match order:\n%s", stdout)
	}
}

// TestShowJSON reads the JSON view back and checks the match order, the
// limits, and that no key material is in it.
func TestShowJSON(t *testing.T) {
	file := showFile(t, showPolicy)
	stdout, stderr, code := run(t, "", attlsdBin, "show", "--json", file)
	if code != 0 || stderr != "" {
		t.Fatalf("attlsd show --json: exit %d, stderr %q; want 0 and nothing", code, stderr)
	}
	var v policy.View
	if err := json.Unmarshal([]byte(stdout), &v); err != nil {
		t.Fatalf("stdout is not a view: %v\n%s", err, stdout)
	}
	if len(v.Inbound) != 2 || v.Inbound[0].Name != "high" || v.Inbound[1].Name != "low" {
		t.Fatalf("inbound: got %+v, want high then low", v.Inbound)
	}
	high, low := v.Inbound[0], v.Inbound[1]
	if high.MaxConnections == nil || *high.MaxConnections != 25 ||
		high.IdleTimeout == nil || *high.IdleTimeout != "5m" {
		t.Errorf("high limits: got %+v, want 25 and 5m", high.LimitsView)
	}
	if low.MaxConnections != nil || low.IdleTimeout != nil ||
		low.HalfCloseTimeout != "1m" || !low.RemoteAddresses.Any {
		t.Errorf("low: got %+v, want no limits, 1m half-close, any client", low)
	}
	if len(v.Outbound) != 2 || v.Outbound[1].Mode != policy.ModeTransparent ||
		v.Outbound[1].ServerName != nil {
		t.Errorf("outbound: got %+v, want api, then transparent web-any with no server name",
			v.Outbound)
	}

	var raw any
	if err := json.Unmarshal([]byte(stdout), &raw); err != nil {
		t.Fatal(err)
	}
	if n := checkPortsAreStrings(t, "", raw); n != 8 {
		t.Errorf("port keys: got %d, want 8 (3 rules, 1 remote_ports, 1 intercept, 3 listeners)", n)
	}

	key, err := os.ReadFile(filepath.Join(filepath.Dir(file), "certs", "server-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	body := strings.Split(strings.TrimSpace(string(key)), "\n")[1]
	if strings.Contains(stdout, "PRIVATE KEY") || strings.Contains(stdout, body) {
		t.Errorf("the JSON view holds key material:\n%s", stdout)
	}
}

// checkPortsAreStrings checks that every "port" and "remote_ports" key in
// the JSON value v, at any depth, holds a string, and returns how many
// there are.
func checkPortsAreStrings(t *testing.T, path string, v any) int {
	t.Helper()
	n := 0
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			if k == "port" || k == "remote_ports" {
				n++
				if _, ok := e.(string); !ok {
					t.Errorf("%s.%s: got %T %v, want a string", path, k, e, e)
				}
			}
			n += checkPortsAreStrings(t, path+"."+k, e)
		}
	case []any:
		for i, e := range v {
			n += checkPortsAreStrings(t, fmt.Sprintf("%s[%d]", path, i), e)
		}
	}
	return n
}

// TestShowErrors: a broken policy gives check's diagnostics on stderr,
// nothing on stdout, and exit 1.
func TestShowErrors(t *testing.T) {
	broken := strings.Replace(showPolicy, "max_connections  = 25",
		"max_connections  = 0", 1)
	file := showFile(t, broken)
	for _, args := range [][]string{{"show", file}, {"show", "--json", file}} {
		stdout, stderr, code := run(t, "", attlsdBin, args...)
		if code != 1 || stdout != "" {
			t.Errorf("attlsd %s: exit %d, stdout %q; want 1 and nothing",
				strings.Join(args, " "), code, stdout)
		}
		checkDiagnostics(t, file, stderr, map[int]string{26: "max_connections"})
	}
}

// showFile writes policy beside a copy of the development PKI.
func showFile(t *testing.T, text string) string {
	t.Helper()
	dir := t.TempDir()
	copyCerts(t, filepath.Join(dir, "certs"))
	file := filepath.Join(dir, "policy.hcl")
	writeFile(t, file, text)
	return file
}
