package main

import (
	"bytes"
	"path/filepath"
	"testing"
	"time"

	"github.com/attlsd/attlsd/certs"
)

// TestCheckSummary runs check through dispatch: the summary counts each
// kind of block in the singular for one and the plural otherwise.
func TestCheckSummary(t *testing.T) {
	dir := t.TempDir()
	if _, err := certs.InitDev(filepath.Join(dir, "certs"), nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	env := "environment \"web\" {\n  certificate = \"certs/server.pem\"\n" +
		"  private_key = \"certs/server-key.pem\"\n}\n"
	rule := func(name, port string) string {
		return "inbound \"" + name + "\" {\n  port = " + port + "\n  environment = \"web\"\n" +
			"  backend = \"127.0.0.1:9080\"\n}\n"
	}
	out := "outbound \"o\" {\n  port = 15003\n  endpoint = \"localhost:8443\"\n" +
		"  environment = \"web\"\n}\n"
	tests := []struct {
		name, policy, want string
	}{
		{"one of each", env + rule("a", "8443") + out,
			"1 environment, 1 inbound rule, 1 outbound rule, 2 listeners, 1 warning\n"},
		{"several", env + rule("a", "8443") + rule("b", "\"8444-8445\""),
			"1 environment, 2 inbound rules, 0 outbound rules, 3 listeners\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := writePolicy(t, dir, "p.hcl", tt.policy)
			var stdout, stderr bytes.Buffer
			if code := dispatch([]string{"check", file}, &stdout, &stderr); code != 0 {
				t.Fatalf("exit: got %d, want 0\nstderr: %s", code, &stderr)
			}
			if want := file + ": ok: " + tt.want; stdout.String() != want {
				t.Errorf("got %q, want %q", stdout.String(), want)
			}
		})
	}
}
