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

	"github.com/redhaven/redhaven/cluster"
	"github.com/redhaven/redhaven/e2e/redistest"
	"github.com/redhaven/redhaven/e2e/testutil"
	"github.com/redhaven/redhaven/node"
)

// startCLIAgents starts count keyed agents in front of set, each with its
// own admin socket, and returns them with their socket paths and the
// cluster key.
func startCLIAgents(t *testing.T, set *redistest.Set, count int) ([]*node.Node, []string, string) {
	t.Helper()
	key, err := node.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	sockDir, err := os.MkdirTemp("", "rh-fwd-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	var nodes []*node.Node
	var socks []string
	var seed string
	for i := range count {
		cfg := node.DefaultConfig()
		cfg.NodeName = fmt.Sprintf("n%d", i+1)
		cfg.DataDir = t.TempDir()
		cfg.Redis.MasterName = set.MasterName
		cfg.Redis.Sentinels = redistest.Addrs(set.Sentinels)
		cfg.Redis.CheckInterval = 100 * time.Millisecond
		cfg.Proxy.Listen = "127.0.0.1:0"
		cfg.HTTP.Listen = "127.0.0.1:0"
		cfg.HTTP.AdminSocket = filepath.Join(sockDir, cfg.NodeName+".sock")
		cfg.Cluster.Bind = fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
		cfg.Cluster.RaftBind = fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
		cfg.Cluster.BootstrapExpect = count
		cfg.Cluster.Encrypt = key
		if i == 0 {
			seed = cfg.Cluster.Bind
		}
		cfg.Cluster.Join = []string{seed}
		logf, err := os.Create(filepath.Join(t.TempDir(), "agent.log"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { logf.Close() })
		n, err := node.New(cfg, node.NewLogger(node.LogConfig{Level: "info", Format: "text"}, logf))
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
				t.Errorf("agent %s did not stop", cfg.NodeName)
			}
		})
		nodes = append(nodes, n)
		socks = append(socks, cfg.HTTP.AdminSocket)
	}
	return nodes, socks, key
}

// TestCLIForwarding: the CLI asked on a follower's socket gets its action
// carried out by the leader and says so; refusals exit 1 with their
// status; a key rotation reaches every node.
func TestCLIForwarding(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	set := redistest.StartSet(t, redistest.SetOptions{})
	nodes, socks, oldKey := startCLIAgents(t, set, 3)
	leader, follower := -1, -1
	testutil.Eventually(t, 30*time.Second, "a leader and every node routing", func() bool {
		leader = -1
		for i, n := range nodes {
			st := n.Cluster().Stats()
			if !st.InContact {
				return false
			}
			if n.Cluster().IsLeader() {
				leader = i
			}
		}
		return leader >= 0 && nodes[leader].Cluster().State().Service(nodes[leader].Service()).Route.Master != ""
	})
	follower = (leader + 1) % 3
	cli := func(stdin string, args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		var code int
		args = append(args, "--socket", socks[follower])
		withStdin(t, stdin, func() { code = run(args, &out, &errb) })
		return code, out.String(), errb.String()
	}

	// route reset of a forged route, asked on the follower
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := nodes[leader].Cluster().ProposeRoute(ctx, nodes[leader].Service(), cluster.RouteDecision{Master: "192.0.2.1:6379", Epoch: 999999999, Reason: "forged"}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "the follower sees the forged route", func() bool {
		return nodes[follower].Cluster().State().Service(nodes[follower].Service()).Route.Epoch == 999999999
	})
	code, out, errs := cli("", "route", "reset")
	// (the leader named may differ from leaderName if an election ran
	// meanwhile on a loaded machine; the follower forwarded either way)
	if code != 0 || !strings.Contains(out, "epoch 999999999") || !strings.Contains(out, "carried out by the leader ") {
		t.Fatalf("route reset: exit %d %q %q", code, out, errs)
	}
	testutil.Eventually(t, 10*time.Second, "sentinel's master committed again", func() bool {
		return nodes[follower].Cluster().State().Service(nodes[follower].Service()).Route.Master == set.Master.Addr
	})

	if code, out, errs := cli("", "backend", "drain", set.Master.Addr); code != 0 || !strings.Contains(out, "carried out by the leader ") {
		t.Fatalf("backend drain: exit %d %q %q", code, out, errs)
	}
	testutil.Eventually(t, 10*time.Second, "drain committed", func() bool {
		return nodes[follower].Cluster().State().Service(nodes[follower].Service()).Admin[set.Master.Addr] == cluster.AdminDrain
	})
	if code, out, errs := cli("", "backend", "ready", set.Master.Addr); code != 0 {
		t.Fatalf("backend ready: exit %d %q %q", code, out, errs)
	}
	if code, out, errs := cli("", "backend", "drain", "203.0.113.1:6379"); code != 1 || !strings.Contains(errs, "404") {
		t.Fatalf("backend drain of an unknown backend: exit %d %q %q, want 1 with a 404", code, out, errs)
	}
	if code, out, errs := cli("", "members", "remove", "nobody"); code != 1 || !strings.Contains(errs, "404") {
		t.Fatalf("members remove nobody: exit %d %q %q, want 1 with a 404", code, out, errs)
	}

	// key rotation from the follower's socket
	newKey, _ := node.GenerateKey()
	oldFP, newFP := "", cluster.KeyFingerprint(newKey)
	code, out, errs = cli("", "keys", "list")
	if code != 0 || strings.Count(out, "\nn") != 3 {
		t.Fatalf("keys list: exit %d %q %q", code, out, errs)
	}
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "n1" {
			oldFP = f[1]
		}
	}
	if code, _, errs := cli("", "keys", "install"); code != 1 || !strings.Contains(errs, "no cluster key") {
		t.Fatalf("keys install without a key: exit %d %q", code, errs)
	}
	if code, _, errs := cli("", "keys", "install", newKey); code != 2 {
		t.Fatalf("keys install with the key on the command line: exit %d %q, want 2", code, errs)
	}
	for _, step := range []string{"install", "use"} {
		code, out, errs := cli(newKey+"\n", "keys", step)
		if code != 0 || strings.Count(out, newFP) < 3 || strings.Contains(out+errs, newKey) {
			t.Fatalf("keys %s: exit %d %q %q", step, code, out, errs)
		}
	}
	code, out, errs = cli("", "keys", "list")
	if code != 0 || strings.Count(out, newFP+"  ") < 3 || !strings.Contains(out, oldFP) {
		t.Fatalf("keys list after use: exit %d %q %q (old %s new %s)", code, out, errs, oldFP, newFP)
	}
	t.Logf("keys list after install and use, asked on %s:\n%s", nodes[follower].Cluster().Name(), out)
	code, out, errs = cli(oldKey+"\n", "keys", "remove")
	if code != 0 || strings.Contains(out, oldFP) || strings.Count(out, newFP) < 6 {
		t.Fatalf("keys remove of the old key: exit %d %q %q", code, out, errs)
	}
	// Raft still commits: a failover request forwarded from the follower.
	// Retried (bounded) while the answer is 503 for want of a leader: on
	// a loaded machine leadership can keep moving for a while. The
	// request's id comes back through the forwarding (the CLI waits for
	// that request's outcome).
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, out, errs := cli("", "failover")
		if code == 0 && strings.Contains(out, "carried out by the leader") && strings.Contains(out, "waiting for the new master (request ") {
			break
		}
		if !strings.Contains(errs, "503") || time.Now().After(deadline) {
			t.Fatalf("failover after the rotation: exit %d %q %q", code, out, errs)
		}
		t.Logf("failover after the rotation: no leader yet, asking again: %s", strings.TrimSpace(errs))
		time.Sleep(time.Second)
	}
}
