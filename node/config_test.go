package node

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "redhaven.yaml")
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

const goodYAML = `
node_name: n1
data_dir: /tmp/rh
redis:
  master_name: mymaster
  sentinels: ["127.0.0.1:26379", "127.0.0.1:26380"]
  check_interval: 200ms
cluster:
  encrypt: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
proxy:
  listen: "127.0.0.1:6380"
  hold_timeout: 3s
`

func TestLoadConfigLayers(t *testing.T) {
	path := writeConfig(t, goodYAML)
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	Flags(fs)
	if err := fs.Parse([]string{"--proxy-listen", "127.0.0.1:7000", "--redis-sentinels", "127.0.0.1:1,127.0.0.1:2,127.0.0.1:3"}); err != nil {
		t.Fatal(err)
	}
	env := []string{"REDHAVEN_PROXY__HOLD_TIMEOUT=2s", "REDHAVEN_REQUIRE=redis", "HOME=/root", "REDHAVEN_PROXY__MAX_CLIENTS=77"}
	cfg, err := LoadConfig(path, env, fs)
	if err != nil {
		t.Fatalf("LoadConfig: %v", err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"file node_name", cfg.NodeName, "n1"},
		{"file check_interval", cfg.Redis.CheckInterval, 200 * time.Millisecond},
		{"env beats file", cfg.Proxy.HoldTimeout, 2 * time.Second},
		{"env int", cfg.Proxy.MaxClients, 77},
		{"flag beats file", cfg.Proxy.Listen, "127.0.0.1:7000"},
		{"flag slice", len(cfg.Redis.Sentinels), 3},
		{"default kept", cfg.Log.Format, "text"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: got %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestLoadConfigErrors(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string
		env     []string
		wantErr string // substring; "" means valid
	}{
		{"unknown key", goodYAML + "proxy_typo: 1\n", nil, `unknown key "proxy_typo"`},
		{"unknown nested key with suggestion", strings.Replace(goodYAML, "hold_timeout", "hold_timout", 1), nil, `did you mean "proxy.hold_timeout"`},
		{"wrong type", goodYAML + "  max_clients: lots\n", nil, "proxy.max_clients"},
		{"bad duration", strings.Replace(goodYAML, "3s", "soon", 1), nil, "proxy.hold_timeout"},
		{"unknown env", goodYAML, []string{"REDHAVEN_PROXY__LISTN=:1"}, "REDHAVEN_PROXY__LISTN"},
		{"bad yaml", "redis: [", nil, "config file"},
		{"bad sentinel address", strings.Replace(goodYAML, "127.0.0.1:26380", "nohost", 1), nil, "redis.sentinels[1]"},
		{"missing master name", strings.Replace(goodYAML, "master_name: mymaster", `master_name: ""`, 1), nil, "redis.master_name"},
		{"bad listen", strings.Replace(goodYAML, `"127.0.0.1:6380"`, `"6380"`, 1), nil, "proxy.listen"},
		{"bad log level", goodYAML + "log:\n  level: loud\n", nil, "log.level"},
		{"valid", goodYAML, nil, ""},
		// Secure by default: bootstrap_expect defaults to 3, so a config
		// without a key (or TLS files, or insecure) does not start.
		{"cluster without key", strings.Replace(goodYAML, "  encrypt:", "  # encrypt:", 1), nil, "`redhaven keygen`"},
		{"cluster without key, insecure", strings.Replace(goodYAML, "  encrypt:", "  insecure: true\n  # encrypt:", 1), nil, ""},
		{"single node without key", strings.Replace(goodYAML, "  encrypt:", "  bootstrap_expect: 1\n  # encrypt:", 1), nil, ""},
		{"cluster with tls files from env", strings.Replace(goodYAML, "  encrypt:", "  # encrypt:", 1),
			[]string{"REDHAVEN_CLUSTER__TLS__CA_FILE=/ca.pem", "REDHAVEN_CLUSTER__TLS__CERT_FILE=/n1.pem", "REDHAVEN_CLUSTER__TLS__KEY_FILE=/n1.key"}, ""},
		{"extra keys list", strings.Replace(goodYAML, "cluster:\n", "cluster:\n  encrypt_keys: [\"AAAAAAAAAAAAAAAAAAAAAA==\"]\n", 1), nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := LoadConfig(writeConfig(t, tt.yaml), tt.env, nil)
			if err == nil {
				err = cfg.Validate()
			}
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.wantErr != "" && err == nil:
				t.Fatalf("no error, want one containing %q", tt.wantErr)
			case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
				t.Fatalf("error %q does not contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestLoadConfigMissingNamedFile(t *testing.T) {
	if _, err := LoadConfig(filepath.Join(t.TempDir(), "nope.yaml"), nil, nil); err == nil || !strings.Contains(err.Error(), "nope.yaml") {
		t.Fatalf("want error naming the missing file, got %v", err)
	}
}
