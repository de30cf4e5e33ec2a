package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCLI(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	keyless := filepath.Join(dir, "keyless.yaml")
	os.WriteFile(good, []byte("node_name: n1\ndata_dir: /tmp/x\nredis:\n  sentinels: [\"127.0.0.1:26379\"]\ncluster:\n  encrypt: \"AAAAAAAAAAAAAAAAAAAAAA==\"\n"), 0o644)
	os.WriteFile(keyless, []byte("node_name: n1\ndata_dir: /tmp/x\nredis:\n  sentinels: [\"127.0.0.1:26379\"]\ncluster:\n  join: [\"10.0.0.2\"]\n"), 0o644)
	svc := filepath.Join(dir, "services.yaml")
	os.WriteFile(svc, []byte("node_name: n1\ndata_dir: /tmp/x\nredis:\n  sentinels: [\"127.0.0.1:26379\"]\ncluster:\n  bootstrap_expect: 1\nservices:\n  - name: cache\n    listen: \":6390\"\n    password: sekrit\n"), 0o644)
	svc2 := filepath.Join(dir, "services2.yaml")
	os.WriteFile(svc2, []byte("node_name: n1\ndata_dir: /tmp/x\nredis:\n  sentinels: [\"127.0.0.1:26379\"]\ncluster:\n  bootstrap_expect: 1\nservices:\n  - name: a\n    listen: \":6390\"\n  - name: b\n    listen: \":6391\"\n"), 0o644)
	os.WriteFile(bad, []byte("node_name: n1\nredis:\n  sentinels: [\"nohost\"]\n  check_intervall: 1s\nproxy:\n  max_clients: -1\n"), 0o644)
	tests := []struct {
		name     string
		args     []string
		code     int
		out, err string
	}{
		{"no args shows usage", nil, 2, "", "Commands:"},
		{"help", []string{"--help"}, 0, "check-config", ""},
		{"version", []string{"version"}, 0, "redhaven ", ""},
		{"unknown command", []string{"frobnicate"}, 2, "", `unknown command "frobnicate"`},
		{"valid config", []string{"check-config", "-c", good}, 0, "configuration is valid", ""},
		{"services listed", []string{"check-config", "-c", svc}, 0, `"cache": read-write on :6390, no read-only listener; 1 Sentinel(s): 127.0.0.1:26379; client AUTH on, Redis auth off`, ""},
		{"two services valid", []string{"check-config", "-c", svc2}, 0, `"b": read-write on :6391`, ""},
		{"unknown key named", []string{"check-config", "-c", bad}, 1, "", `"redis.check_intervall"`},
		{"missing file named", []string{"check-config", "-c", filepath.Join(dir, "nope.yaml")}, 1, "", "nope.yaml"},
		{"flag overrides", []string{"check-config", "-c", good, "--proxy-listen", "nonsense"}, 1, "", "proxy.listen"},
		{"agent refuses bad config", []string{"agent", "-c", bad}, 2, "", "redis.check_intervall"},
		{"agent refuses a cluster without key", []string{"agent", "-c", keyless}, 2, "", "`redhaven keygen`"},
		{"keygen", []string{"keygen"}, 0, "=", ""},
		{"members remove needs a name", []string{"members", "remove", "--http", "127.0.0.1:1"}, 2, "", "give exactly one member name"},
		{"members remove without agent", []string{"members", "remove", "--http", "127.0.0.1:1", "n3"}, 4, "", "cannot reach the agent"},
		{"status without agent", []string{"status", "--addr", "http://127.0.0.1:1"}, 4, "", "cannot reach the agent at http://127.0.0.1:1"},
		{"status, old --http flag", []string{"status", "--http", "127.0.0.1:1"}, 4, "", "cannot reach the agent"},
		{"status without socket", []string{"status", "--socket", filepath.Join(dir, "none.sock")}, 4, "", "cannot reach the agent at the admin socket " + filepath.Join(dir, "none.sock")},
		{"join needs an address", []string{"join", "--addr", "127.0.0.1:1"}, 2, "", "give at least one"},
		{"passwd takes no arguments", []string{"passwd", "hunter2"}, 2, "", "never from the command line"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(tt.args, &out, &errb)
			if code != tt.code {
				t.Errorf("exit %d, want %d; stdout %q stderr %q", code, tt.code, out.String(), errb.String())
			}
			if tt.out != "" && !strings.Contains(out.String(), tt.out) {
				t.Errorf("stdout %q does not contain %q", out.String(), tt.out)
			}
			if tt.err != "" && !strings.Contains(errb.String(), tt.err) {
				t.Errorf("stderr %q does not contain %q", errb.String(), tt.err)
			}
		})
	}
}
