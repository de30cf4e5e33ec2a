package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/redhaven/redhaven/e2e/redistest"
	"github.com/redhaven/redhaven/e2e/testutil"
	"github.com/redhaven/redhaven/node"
)

// withStdin runs f with os.Stdin reading input.
func withStdin(t *testing.T, input string, f func()) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	go func() { w.WriteString(input); w.Close() }()
	old := os.Stdin
	os.Stdin = r
	defer func() { os.Stdin = old; r.Close() }()
	f()
}

func TestPasswd(t *testing.T) {
	var out, errb bytes.Buffer
	var code int
	withStdin(t, "correct horse\n", func() { code = run([]string{"passwd"}, &out, &errb) })
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	h := strings.TrimSpace(out.String())
	if bcrypt.CompareHashAndPassword([]byte(h), []byte("correct horse")) != nil {
		t.Fatalf("%q is not a bcrypt hash of the password", h)
	}
	if strings.Contains(out.String()+errb.String(), "correct horse") {
		t.Error("the password was printed")
	}
	// The hash is what http.auth takes.
	cfgFile := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(cfgFile, []byte(fmt.Sprintf("node_name: n1\nredis:\n  sentinels: [\"127.0.0.1:26379\"]\ncluster:\n  bootstrap_expect: 1\nhttp:\n  auth:\n    - {name: ops, role: admin, password_hash: %q}\n", h)), 0o600)
	out.Reset()
	if code := run([]string{"check-config", "-c", cfgFile}, &out, &errb); code != 0 {
		t.Errorf("config with the hash: exit %d %s", code, errb.String())
	}
	out.Reset()
	errb.Reset()
	withStdin(t, "", func() { code = run([]string{"passwd"}, &out, &errb) })
	if code != 1 || !strings.Contains(errb.String(), "no password") {
		t.Errorf("empty input: exit %d %q", code, errb.String())
	}
}

// The CLI acts on a real agent over its admin socket, with no http.auth
// users, and the same agent refuses the same action over TCP without
// credentials, from loopback too.
func TestCLIAdminSocket(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	set := redistest.StartSet(t, redistest.SetOptions{DownAfter: time.Second})
	sockDir, err := os.MkdirTemp("", "rh-cli-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	cfg := node.DefaultConfig()
	cfg.NodeName = "cli1"
	cfg.DataDir = t.TempDir()
	cfg.Redis.MasterName = set.MasterName
	cfg.Redis.Sentinels = redistest.Addrs(set.Sentinels)
	cfg.Redis.CheckInterval = 100 * time.Millisecond
	cfg.Proxy.Listen = "127.0.0.1:0"
	cfg.HTTP.Listen = "127.0.0.1:0"
	cfg.HTTP.AdminSocket = filepath.Join(sockDir, "admin.sock")
	cfg.Cluster.Bind = fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	cfg.Cluster.RaftBind = fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	cfg.Cluster.BootstrapExpect = 1
	logf, err := os.Create(filepath.Join(t.TempDir(), "agent.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { logf.Close() })
	n, err := node.New(cfg, node.NewLogger(node.LogConfig{Level: "debug", Format: "text"}, logf))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			t.Error("agent did not stop")
		}
	})
	sock := []string{"--socket", cfg.HTTP.AdminSocket}
	cli := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := run(args, &out, &errb)
		return code, out.String(), errb.String()
	}
	testutil.Eventually(t, 20*time.Second, "status over the socket says the node routes", func() bool {
		code, _, _ := cli(append([]string{"status"}, sock...)...)
		return code == 0
	})
	if code, out, errs := cli(append([]string{"members"}, sock...)...); code != 0 || !strings.Contains(out, "cli1") {
		t.Fatalf("members over the socket: %d %q %q", code, out, errs)
	}
	tcp := []string{"--addr", "http://" + n.HTTPAddr().String()}
	if code, out, errs := cli(append([]string{"failover"}, tcp...)...); code != 1 || !strings.Contains(errs, "403") || !strings.Contains(errs, "admin socket") {
		t.Fatalf("failover over TCP without credentials: exit %d %q %q", code, out, errs)
	}
	if code, out, errs := cli(append([]string{"leave"}, tcp...)...); code != 1 || !strings.Contains(errs, "403") {
		t.Fatalf("leave over TCP without credentials: exit %d %q %q", code, out, errs)
	}
	code, out, errs := cli(append([]string{"failover"}, sock...)...)
	if code != 0 || !strings.Contains(out, "new master") {
		t.Fatalf("failover over the socket: exit %d %q %q", code, out, errs)
	}
}
