package cluster

import (
	"encoding/base64"
	"strings"
	"testing"
	"time"
)

// testKey is a fixed valid cluster key (32 zero bytes).
var testKey = base64.StdEncoding.EncodeToString(make([]byte, 32))

func validConfig() Config {
	c := DefaultConfig()
	c.NodeName = "n1"
	c.DataDir = "/tmp/x"
	c.Encrypt = testKey
	return c
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		mod     func(*Config)
		wantErr string // "" = valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"loopback binds", func(c *Config) { c.Bind, c.RaftBind = "127.0.0.1:0", "127.0.0.1:7000" }, ""},
		{"ipv6 bind", func(c *Config) { c.Bind = "[::1]:7946" }, ""},
		{"no node name", func(c *Config) { c.NodeName = "" }, "node_name:"},
		{"no data dir", func(c *Config) { c.DataDir = "" }, "data_dir:"},
		{"bind without port", func(c *Config) { c.Bind = "127.0.0.1" }, "cluster.bind:"},
		{"bind hostname", func(c *Config) { c.Bind = "localhost:7946" }, "cluster.bind:"},
		{"raft bind bad port", func(c *Config) { c.RaftBind = ":99999" }, "cluster.raft_bind:"},
		{"advertise ip only", func(c *Config) { c.Advertise = "10.0.0.1" }, ""},
		{"advertise unspecified", func(c *Config) { c.Advertise = "0.0.0.0:7946" }, "cluster.advertise:"},
		{"raft advertise hostname", func(c *Config) { c.RaftAdvertise = "node1:7947" }, "cluster.raft_advertise:"},
		{"join host only", func(c *Config) { c.Join = []string{"node2", "10.0.0.2:7946"} }, ""},
		{"join empty entry", func(c *Config) { c.Join = []string{"10.0.0.2", ""} }, "cluster.join[1]:"},
		{"join bad port", func(c *Config) { c.Join = []string{"10.0.0.2:x"} }, "cluster.join[0]:"},
		{"bootstrap_expect negative", func(c *Config) { c.BootstrapExpect = -1 }, "cluster.bootstrap_expect:"},
		{"bootstrap_expect zero", func(c *Config) { c.BootstrapExpect = 0 }, ""}, // with the key
		{"encrypt bad base64", func(c *Config) { c.Encrypt = "not base64!" }, "cluster.encrypt: not valid base64"},
		{"encrypt bad length", func(c *Config) { c.Encrypt = base64.StdEncoding.EncodeToString(make([]byte, 20)) }, "cluster.encrypt: key is 20 bytes"},
		{"encrypt 16 bytes", func(c *Config) { c.Encrypt = base64.StdEncoding.EncodeToString(make([]byte, 16)) }, ""},
		// Secure by default: more than one node needs a key or TLS files.
		{"multi-node default without key", func(c *Config) { c.Encrypt = "" }, "redhaven keygen"},
		{"join list without key", func(c *Config) { c.Encrypt, c.BootstrapExpect, c.Join = "", 1, []string{"10.0.0.2"} }, "cluster.encrypt: a cluster of more than one node"},
		{"bootstrap_expect 2 without key", func(c *Config) { c.Encrypt, c.BootstrapExpect = "", 2 }, "redhaven keygen"},
		{"single node without key", func(c *Config) { c.Encrypt, c.BootstrapExpect = "", 1 }, ""},
		{"join-only node without key", func(c *Config) { c.Encrypt, c.BootstrapExpect = "", 0 }, "redhaven keygen"},
		{"multi-node insecure", func(c *Config) { c.Encrypt, c.Insecure = "", true }, ""},
		{"multi-node with tls files", func(c *Config) {
			c.Encrypt, c.TLS = "", TLSConfig{CAFile: "ca.pem", CertFile: "n1.pem", KeyFile: "n1.key"}
		}, ""},
		{"tls files incomplete", func(c *Config) { c.TLS = TLSConfig{CAFile: "ca.pem"} }, "cluster.tls: ca_file, cert_file and key_file go together"},
		{"incomplete tls without key", func(c *Config) { c.Encrypt, c.TLS = "", TLSConfig{CertFile: "n1.pem"} }, "cluster.tls:"},
		{"extra keys", func(c *Config) { c.EncryptKeys = []string{base64.StdEncoding.EncodeToString(make([]byte, 16))} }, ""},
		{"extra key bad", func(c *Config) { c.EncryptKeys = []string{testKey, "x!"} }, "cluster.encrypt_keys[1]: not valid base64"},
		{"extra keys without primary", func(c *Config) { c.Encrypt, c.Insecure, c.EncryptKeys = "", true, []string{testKey} }, "cluster.encrypt_keys: extra keys need a primary"},
		{"lease above heartbeat", func(c *Config) { c.LeaderLeaseTimeout = time.Second }, "cluster.leader_lease_timeout:"},
		{"election below heartbeat", func(c *Config) { c.ElectionTimeout = 100 * time.Millisecond }, "cluster.election_timeout:"},
		{"zero contact bound", func(c *Config) { c.ContactBound = 0 }, "cluster.contact_bound:"},
		{"negative cleanup", func(c *Config) { c.DeadServerCleanup = -time.Second }, "cluster.dead_server_cleanup:"},
		{"two services", func(c *Config) { c.Services = []string{"mymaster", "cache"} }, ""},
		{"repeated service", func(c *Config) { c.Services = []string{"mymaster", "cache", "mymaster"} }, "services[2]:"},
		{"empty service name", func(c *Config) { c.Services = []string{""} }, "services[0]:"},
		{"huge metadata", func(c *Config) { c.Version = strings.Repeat("v", 400) }, "gossip metadata"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig()
			tt.mod(&c)
			err := c.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tt.wantErr != "" && err == nil:
				t.Fatalf("Validate() = nil, want error containing %q", tt.wantErr)
			case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
				t.Fatalf("Validate() = %v, want error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestGenerateKey(t *testing.T) {
	k1, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	k2, _ := GenerateKey()
	if k1 == k2 {
		t.Fatal("two generated keys are equal")
	}
	c := validConfig()
	c.Encrypt = k1
	if err := c.Validate(); err != nil {
		t.Fatalf("generated key rejected: %v", err)
	}
	if b, _ := base64.StdEncoding.DecodeString(k1); len(b) != 32 {
		t.Fatalf("key is %d bytes, want 32", len(b))
	}
}

func TestJoinHint(t *testing.T) {
	err := errorString("failed to join 127.0.0.1:1: no installed keys could decrypt the message")
	if h := joinHint(err); !strings.Contains(h, "cluster.encrypt") {
		t.Fatalf("joinHint = %q, want a cluster.encrypt hint", h)
	}
}

type errorString string

func (e errorString) Error() string { return string(e) }

func TestNewBindsRaftAndClose(t *testing.T) {
	c := validConfig()
	c.DataDir = t.TempDir()
	c.Bind, c.RaftBind = "127.0.0.1:0", "127.0.0.1:0"
	a, err := New(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(a.RaftAddr(), "127.0.0.1:") || strings.HasSuffix(a.RaftAddr(), ":0") {
		t.Fatalf("RaftAddr = %q, want the bound loopback port", a.RaftAddr())
	}
	if a.InContact() || a.IsLeader() {
		t.Fatal("agent that never ran claims contact or leadership")
	}
	if _, err := a.Join([]string{"127.0.0.1:1"}); err != ErrNotRunning {
		t.Fatalf("Join before Run = %v, want ErrNotRunning", err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := a.Run(t.Context()); err == nil {
		t.Fatal("Run after Close succeeded")
	}
	c.Bind = "localhost:1"
	if _, err := New(c, nil); err == nil || !strings.Contains(err.Error(), "cluster.bind") {
		t.Fatalf("New with bad bind = %v", err)
	}
}
