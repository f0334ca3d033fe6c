package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/attlsd/attlsd/certs"
	"github.com/attlsd/attlsd/policy"
)

const showTestPolicy = `environment "web" {
  certificate = "certs/server.pem"
  private_key = "certs/server-key.pem"
}
inbound "api" {
  port            = 8443
  environment     = "web"
  backend         = "127.0.0.1:9080"
  max_connections = %s
}
`

// TestShowCmd runs show through dispatch: text, JSON, a broken policy and
// a bad command line.
func TestShowCmd(t *testing.T) {
	dir := t.TempDir()
	if _, err := certs.InitDev(filepath.Join(dir, "certs"), nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	good := writePolicy(t, dir, "good.hcl", strings.Replace(showTestPolicy, "%s", "3", 1))
	bad := writePolicy(t, dir, "bad.hcl", strings.Replace(showTestPolicy, "%s", "0", 1))

	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout string // a substring; "" wants nothing at all
		wantStderr string // a substring; "" wants nothing at all
	}{
		{"text", []string{"show", good}, 0, "    max_connections      3\n", ""},
		{"json", []string{"show", "--json", good}, 0, `"max_connections": 3,`, ""},
		{"errors", []string{"show", bad}, 1, "", bad + ":9:21: Invalid max_connections"},
		{"no file", []string{"show"}, 2, "", "usage: attlsd show [--json] FILE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := dispatch(tt.args, &stdout, &stderr)
			if code != tt.wantCode {
				t.Fatalf("exit: got %d, want %d\nstderr: %s", code, tt.wantCode, &stderr)
			}
			checkOutput(t, "stdout", stdout.String(), tt.wantStdout)
			checkOutput(t, "stderr", stderr.String(), tt.wantStderr)
		})
	}

	var stdout bytes.Buffer
	dispatch([]string{"show", "--json", good}, &stdout, &bytes.Buffer{})
	var v policy.View
	if err := json.Unmarshal(stdout.Bytes(), &v); err != nil || len(v.Inbound) != 1 {
		t.Errorf("JSON view: got %d inbound rules (%v), want 1", len(v.Inbound), err)
	}
}

// checkOutput checks that got holds want, or is empty when want is.
func checkOutput(t *testing.T, what, got, want string) {
	t.Helper()
	if want == "" && got != "" || !strings.Contains(got, want) {
		t.Errorf("%s: got %q, want %q", what, got, want)
	}
}

func writePolicy(t *testing.T, dir, name, text string) string {
	t.Helper()
	file := filepath.Join(dir, name)
	if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return file
}
