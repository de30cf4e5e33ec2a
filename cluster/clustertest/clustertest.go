// Package clustertest runs in-process redhaven clusters (several
// cluster.Agents on loopback ports, data in t.TempDir()) for tests.
package clustertest

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redhaven/redhaven/cluster"
	"github.com/redhaven/redhaven/e2e/testutil"
)

// FreePort returns a loopback port free for TCP and UDP (see
// testutil.FreePort: below the ephemeral range, never the same one twice).
func FreePort(t testing.TB) int {
	t.Helper()
	return testutil.FreePort(t)
}

// Eventually polls cond every 10ms until it holds or timeout passes.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for: %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Config returns a loopback configuration for node name with fresh ports and
// a data dir under t.TempDir(). Timings are the package defaults. The Raft
// port is fixed too: a restarted node must keep its Raft address, or a
// cluster restarted as a whole cannot elect (its log names the old ones).
func Config(t testing.TB, name string) cluster.Config {
	c := cluster.DefaultConfig()
	c.NodeName = name
	c.DataDir = t.TempDir()
	c.Bind = fmt.Sprintf("127.0.0.1:%d", FreePort(t))
	c.RaftBind = fmt.Sprintf("127.0.0.1:%d", FreePort(t))
	c.HTTPAddr = "127.0.0.1:0"
	c.Version = "test"
	return c
}

// Key returns a new cluster key (cluster.encrypt).
func Key(t testing.TB) string {
	t.Helper()
	k, err := cluster.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// Logs records an agent's log lines; set REDHAVEN_TEST_LOG=1 to also see
// them on stderr.
type Logs struct {
	mu    sync.Mutex
	lines []string
}

// Contains reports whether a recorded line contains s.
func (l *Logs) Contains(s string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, line := range l.lines {
		if strings.Contains(line, s) {
			return true
		}
	}
	return false
}

// Matching returns the recorded lines that contain s.
func (l *Logs) Matching(s string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, line := range l.lines {
		if strings.Contains(line, s) {
			out = append(out, line)
		}
	}
	return out
}

type logHandler struct {
	logs   *Logs
	attrs  string
	stderr bool
}

func (h *logHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *logHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s %s%s", r.Time.Format("15:04:05.000"), r.Level, r.Message, h.attrs)
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	line := b.String()
	h.logs.mu.Lock()
	if len(h.logs.lines) < 100000 {
		h.logs.lines = append(h.logs.lines, line)
	}
	h.logs.mu.Unlock()
	if h.stderr {
		fmt.Fprintln(os.Stderr, line)
	}
	return nil
}
func (h *logHandler) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	for _, a := range as {
		c.attrs += fmt.Sprintf(" %s=%v", a.Key, a.Value)
	}
	return &c
}
func (h *logHandler) WithGroup(string) slog.Handler { return h }

// Node is one agent of a Cluster.
type Node struct {
	Config cluster.Config
	Agent  *cluster.Agent // nil while stopped
	Logs   *Logs

	cancel context.CancelFunc
	done   chan error
}

// Cluster is a set of nodes that all join through the first node's gossip
// address (the seed).
type Cluster struct {
	t     testing.TB
	Nodes []*Node
	// Key is the cluster key the nodes were configured with ("" when
	// Insecure).
	Key string
}

// Options for New.
type Options struct {
	// BootstrapExpect defaults to the number of nodes.
	BootstrapExpect int
	// Encrypt is the cluster key for every node; empty = a fresh key
	// generated for this cluster (Cluster.Key), unless Insecure.
	Encrypt string
	// Insecure runs without a key: plain-text gossip and Raft
	// (cluster.insecure).
	Insecure bool
	// Configure may adjust node i's configuration.
	Configure func(i int, c *cluster.Config)
}

// New prepares n nodes (names n1..nN, all with join = [seed]); none is
// started. Every started node is hard-stopped in t.Cleanup.
func New(t testing.TB, n int, opts Options) *Cluster {
	t.Helper()
	c := &Cluster{t: t, Key: opts.Encrypt}
	if c.Key == "" && !opts.Insecure {
		c.Key = Key(t)
	}
	expect := opts.BootstrapExpect
	if expect == 0 {
		expect = n
	}
	var seed string
	for i := range n {
		cfg := Config(t, fmt.Sprintf("n%d", i+1))
		if i == 0 {
			seed = cfg.Bind
		}
		cfg.Join = []string{seed}
		cfg.BootstrapExpect = expect
		cfg.Encrypt = c.Key
		cfg.Insecure = opts.Insecure
		if opts.Configure != nil {
			opts.Configure(i, &cfg)
		}
		c.Nodes = append(c.Nodes, &Node{Config: cfg})
	}
	t.Cleanup(func() {
		for i := range c.Nodes {
			c.Stop(i)
		}
	})
	return c
}

// Start starts node i (again, with the same config and data dir, after
// Stop).
func (c *Cluster) Start(i int) *cluster.Agent {
	c.t.Helper()
	n := c.Nodes[i]
	if n.Agent != nil {
		c.t.Fatalf("node %s already running", n.Config.NodeName)
	}
	if n.Logs == nil {
		n.Logs = &Logs{}
	}
	logger := slog.New(&logHandler{logs: n.Logs, stderr: os.Getenv("REDHAVEN_TEST_LOG") != ""})
	a, err := cluster.New(n.Config, logger)
	if err != nil {
		c.t.Fatalf("new agent %s: %v", n.Config.NodeName, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n.Agent, n.cancel, n.done = a, cancel, make(chan error, 1)
	go func(done chan error) { done <- a.Run(ctx) }(n.done)
	return a
}

// StartAll starts the nodes in the given order (default 0..n-1).
func (c *Cluster) StartAll(order ...int) {
	c.t.Helper()
	if len(order) == 0 {
		for i := range c.Nodes {
			order = append(order, i)
		}
	}
	for _, i := range order {
		c.Start(i)
	}
}

// Stop cancels node i's Run (a leave only if its LeaveOnTerminate is set)
// and waits for Run to return. A no-op for a stopped node.
func (c *Cluster) Stop(i int) {
	n := c.Nodes[i]
	if n.Agent == nil {
		return
	}
	n.cancel()
	select {
	case err := <-n.done:
		if err != nil {
			c.t.Errorf("node %s: Run: %v", n.Config.NodeName, err)
		}
	case <-time.After(30 * time.Second):
		c.t.Errorf("node %s: Run did not return within 30s of cancel", n.Config.NodeName)
	}
	n.Agent = nil
}

// Running returns the agents that are running.
func (c *Cluster) Running() []*cluster.Agent {
	var out []*cluster.Agent
	for _, n := range c.Nodes {
		if n.Agent != nil {
			out = append(out, n.Agent)
		}
	}
	return out
}

// WaitLeader waits until exactly one running agent is leader and every
// running agent (except those in skip) names it; it returns the leader's
// index.
func (c *Cluster) WaitLeader(timeout time.Duration, skip ...int) int {
	c.t.Helper()
	idx := -1
	Eventually(c.t, timeout, "one leader that every running node follows", func() bool {
		idx = -1
		for i, n := range c.Nodes {
			if n.Agent == nil || contains(skip, i) {
				continue
			}
			if n.Agent.IsLeader() {
				if idx >= 0 {
					return false
				}
				idx = i
			}
		}
		if idx < 0 {
			return false
		}
		name := c.Nodes[idx].Config.NodeName
		for i, n := range c.Nodes {
			if n.Agent == nil || contains(skip, i) {
				continue
			}
			if l, _ := n.Agent.Leader(); l != name {
				return false
			}
		}
		return true
	})
	return idx
}

// Voters returns the voter names in agent a's Raft configuration.
func Voters(a *cluster.Agent) []string {
	var out []string
	for _, m := range a.Members() {
		if m.Suffrage == "voter" {
			out = append(out, m.Name)
		}
	}
	return out
}

func contains(xs []int, x int) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}
