//go:build linux

package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/redhaven/redhaven/e2e/redistest"
	"github.com/redhaven/redhaven/e2e/testutil"
)

// Helpers for tests of whole agents in network namespaces: a "lan"
// namespace holding a bridge, one namespace per node and one for a client,
// each joined to the bridge by a veth pair whose inner end is eth0.
// Addresses come from 192.0.2.0/24 (TEST-NET-1), which exists only inside
// these namespaces. Root only.

// labSubnet is the lab's LAN; nothing outside the namespaces uses it.
const labSubnet = "192.0.2"

// labHost is one namespace on the lab's LAN.
type labHost struct {
	name string // short name: n1, n2, ..., client
	ns   string // namespace name (rh-<pid>-<name>)
	ip   string // address on eth0
	mac  net.HardwareAddr
}

// netLab is the bridge namespace, the node namespaces and the client.
type netLab struct {
	lan    string // namespace holding the bridge
	nodes  []*labHost
	client *labHost
}

// requireNetnsLab skips (or fails under REDHAVEN_REQUIRE=netns) unless we
// are root with a working `ip netns`.
func requireNetnsLab(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		testutil.Require(t, "netns", "not root (network namespace tests need root)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		testutil.Require(t, "netns", "`ip` (iproute2) not on PATH")
	}
	if out, err := exec.Command("ip", "netns", "list").CombinedOutput(); err != nil {
		testutil.Require(t, "netns", fmt.Sprintf("`ip netns list` fails: %v: %s", err, out))
	}
}

// labIP runs `ip args...` (bounded) and fails the test on error.
func labIP(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// newNetLab creates the namespaces, the bridge and the veth pairs for
// `nodes` node namespaces (n1 = .11, n2 = .12, ...) and a client (.50).
// Everything is deleted in t.Cleanup, even when the test fails half way.
func newNetLab(t *testing.T, nodes int) *netLab {
	t.Helper()
	requireNetnsLab(t)
	prefix := fmt.Sprintf("rh-%d-", os.Getpid())
	lab := &netLab{lan: prefix + "lan"}
	addNS := func(ns string) {
		t.Cleanup(func() {
			if _, err := os.Stat(filepath.Join("/var/run/netns", ns)); err != nil {
				return // never created
			}
			if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
				t.Errorf("ip netns del %s: %v: %s", ns, err, out)
			}
		})
		if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
			testutil.Require(t, "netns", fmt.Sprintf("ip netns add %s: %v: %s", ns, err, out))
		}
		labIP(t, "-n", ns, "link", "set", "lo", "up")
	}
	addNS(lab.lan)
	labIP(t, "-n", lab.lan, "link", "add", "br0", "type", "bridge", "stp_state", "0", "forward_delay", "0")
	labIP(t, "-n", lab.lan, "link", "set", "br0", "up")

	attach := func(name, ip string) *labHost {
		h := &labHost{name: name, ns: prefix + name, ip: ip}
		addNS(h.ns)
		port := "v" + name // bridge port in the lan namespace
		labIP(t, "-n", lab.lan, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", h.ns)
		labIP(t, "-n", lab.lan, "link", "set", port, "master", "br0")
		labIP(t, "-n", lab.lan, "link", "set", port, "up")
		labIP(t, "-n", h.ns, "addr", "add", ip+"/24", "dev", "eth0")
		labIP(t, "-n", h.ns, "link", "set", "eth0", "up")
		nh := nsHandle(t, h.ns)
		link, err := nh.LinkByName("eth0")
		if err != nil {
			t.Fatalf("eth0 in %s: %v", h.ns, err)
		}
		h.mac = link.Attrs().HardwareAddr
		return h
	}
	for i := 1; i <= nodes; i++ {
		lab.nodes = append(lab.nodes, attach(fmt.Sprintf("n%d", i), fmt.Sprintf("%s.%d", labSubnet, 10+i)))
	}
	lab.client = attach("client", labSubnet+".50")
	return lab
}

// nsHandle opens a netlink handle inside namespace ns, closed at cleanup.
// A handle is not safe for concurrent use: give each goroutine its own.
func nsHandle(t *testing.T, ns string) *netlink.Handle {
	t.Helper()
	nsh, err := netns.GetFromName(ns)
	if err != nil {
		t.Fatalf("open namespace %s: %v", ns, err)
	}
	defer nsh.Close()
	h, err := netlink.NewHandleAt(nsh)
	if err != nil {
		t.Fatalf("netlink in %s: %v", ns, err)
	}
	t.Cleanup(h.Close)
	return h
}

// hasAddr reports whether link eth0 (as seen through h) carries addr.
func hasAddr(h *netlink.Handle, link netlink.Link, addr netip.Addr) (bool, error) {
	var err error
	for try := 0; try < 3; try++ {
		var addrs []netlink.Addr
		addrs, err = h.AddrList(link, netlink.FAMILY_V4)
		if errors.Is(err, netlink.ErrDumpInterrupted) {
			continue // the dump raced a change; ask again
		}
		if err != nil {
			return false, err
		}
		for _, a := range addrs {
			if got, ok := netip.AddrFromSlice(a.IP); ok && got.Unmap() == addr {
				return true, nil
			}
		}
		return false, nil
	}
	return false, err
}

// neighMAC returns the MAC and state of ip in the neighbour table seen
// through h ("" when there is no entry).
func neighMAC(h *netlink.Handle, linkIndex int, ip netip.Addr) (string, int, error) {
	var err error
	for try := 0; try < 3; try++ {
		var ns []netlink.Neigh
		ns, err = h.NeighList(linkIndex, netlink.FAMILY_V4)
		if errors.Is(err, netlink.ErrDumpInterrupted) {
			continue
		}
		if err != nil {
			return "", 0, err
		}
		for _, n := range ns {
			if got, ok := netip.AddrFromSlice(n.IP); ok && got.Unmap() == ip {
				if len(n.HardwareAddr) == 0 {
					return "", n.State, nil // INCOMPLETE / FAILED
				}
				return n.HardwareAddr.String(), n.State, nil
			}
		}
		return "", 0, nil
	}
	return "", 0, err
}

// nsRun runs `ip netns exec ns args...` bounded by timeout and returns its
// combined output.
func nsRun(timeout time.Duration, ns string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns}, args...)...)
	cmd.WaitDelay = time.Second
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		return string(out), fmt.Errorf("%s in %s: timed out after %v", strings.Join(args, " "), ns, timeout)
	}
	if err != nil {
		return string(out), fmt.Errorf("%s in %s: %w: %s", strings.Join(args, " "), ns, err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// nsProc is a long-running process started in a namespace with
// `ip netns exec` (which execs, so the PID is the program's own).
type nsProc struct {
	name    string
	logPath string
	cmd     *exec.Cmd
	done    chan struct{}
}

// startNSProc starts args in namespace ns with stdout and stderr in
// logPath. The caller stops it (stopNSProcs) from a t.Cleanup registered
// before the call.
func startNSProc(t *testing.T, name, ns, logPath string, env []string, args ...string) *nsProc {
	t.Helper()
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close() // the child has its own copy
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = env
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s in %s: %v", name, ns, err)
	}
	p := &nsProc{name: name, logPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	return p
}

// exited reports whether the process has ended.
func (p *nsProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// kill sends SIGKILL (kill -9) and waits, bounded, until it is gone.
func (p *nsProc) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
	}
}

// stopNSProcs sends SIGTERM to every running process at once, waits up to
// grace for all of them, then SIGKILLs the rest. It returns the names of
// those that needed SIGKILL.
func stopNSProcs(procs []*nsProc, grace time.Duration) []string {
	for _, p := range procs {
		if p != nil && !p.exited() {
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	deadline := time.After(grace)
	var killed []string
	for _, p := range procs {
		if p == nil {
			continue
		}
		select {
		case <-p.done:
		case <-deadline:
			deadline = closedTimeChan() // the grace is shared, not per process
		}
		if !p.exited() {
			killed = append(killed, p.name)
			// SIGQUIT first: a Go process writes every goroutine's stack
			// to its log, which says where the stop hung.
			_ = p.cmd.Process.Signal(syscall.SIGQUIT)
			select {
			case <-p.done:
			case <-time.After(2 * time.Second):
			}
			p.kill()
		}
	}
	return killed
}

func closedTimeChan() <-chan time.Time {
	c := make(chan time.Time)
	close(c)
	return c
}

// tail returns the last n lines of the process's log, leaving out
// level=DEBUG lines when keepDebug is false.
func (p *nsProc) tail(n int, keepDebug bool) string {
	b, _ := os.ReadFile(p.logPath)
	var lines []string
	for _, l := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		if keepDebug || !strings.Contains(l, "level=DEBUG") {
			lines = append(lines, l)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// labRedis is a Redis master on the first node, a replica on every other
// node, and a Sentinel on every node, each bound to its node's address.
type labRedis struct {
	masterName string
	master     string   // host:port
	sentinels  []string // host:port
	procs      []*nsProc
}

// startLabRedis starts the Redis set in the lab's node namespaces; the
// processes are SIGKILLed at cleanup.
func startLabRedis(t *testing.T, lab *netLab) *labRedis {
	t.Helper()
	redistest.RequireRedis(t)
	if _, err := exec.LookPath("redis-cli"); err != nil {
		testutil.Require(t, "redis", "redis-cli not on PATH (apt-get install redis-tools)")
	}
	rs := &labRedis{masterName: "mymaster", master: lab.nodes[0].ip + ":6379"}
	var mu sync.Mutex
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, p := range rs.procs {
			p.kill()
		}
		if t.Failed() {
			for _, p := range rs.procs {
				t.Logf("%s log (last lines):\n%s", p.name, p.tail(15, true))
			}
		}
	})
	add := func(p *nsProc) {
		mu.Lock()
		rs.procs = append(rs.procs, p)
		mu.Unlock()
	}
	env := os.Environ()
	for i, h := range lab.nodes {
		dir := t.TempDir()
		args := []string{"redis-server", "--port", "6379", "--bind", h.ip, "--protected-mode", "no",
			"--save", "", "--appendonly", "no", "--dir", dir, "--daemonize", "no"} // logs to stdout
		if i > 0 {
			args = append(args, "--replicaof", lab.nodes[0].ip, "6379")
		}
		add(startNSProc(t, "redis-"+h.name, h.ns, filepath.Join(dir, "redis.log"), env, args...))
	}
	for _, h := range lab.nodes {
		h := h
		testutil.EventuallyEvery(t, 10*time.Second, 50*time.Millisecond, "redis on "+h.name+" answers PING", func() bool {
			out, err := nsRun(2*time.Second, h.ns, "redis-cli", "-h", h.ip, "-p", "6379", "PING")
			return err == nil && strings.TrimSpace(out) == "PONG"
		})
	}
	for _, h := range lab.nodes[1:] {
		h := h
		testutil.EventuallyEvery(t, 15*time.Second, 100*time.Millisecond, "replica on "+h.name+" linked to the master", func() bool {
			out, err := nsRun(2*time.Second, h.ns, "redis-cli", "-h", h.ip, "-p", "6379", "INFO", "replication")
			return err == nil && strings.Contains(out, "master_link_status:up")
		})
	}
	for _, h := range lab.nodes {
		dir := t.TempDir()
		conf := strings.Join([]string{
			"port 26379",
			"bind " + h.ip,
			"protected-mode no",
			"daemonize no",
			"dir " + dir,
			fmt.Sprintf("sentinel monitor %s %s 6379 %d", rs.masterName, lab.nodes[0].ip, len(lab.nodes)/2+1),
			fmt.Sprintf("sentinel down-after-milliseconds %s 1000", rs.masterName),
			fmt.Sprintf("sentinel failover-timeout %s 6000", rs.masterName),
		}, "\n") + "\n"
		path := filepath.Join(dir, "sentinel.conf")
		if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
		add(startNSProc(t, "sentinel-"+h.name, h.ns, filepath.Join(dir, "sentinel.log"), env, "redis-sentinel", path))
		rs.sentinels = append(rs.sentinels, h.ip+":26379")
	}
	for _, h := range lab.nodes {
		h := h
		testutil.EventuallyEvery(t, 10*time.Second, 50*time.Millisecond, "sentinel on "+h.name+" knows the master", func() bool {
			out, err := nsRun(2*time.Second, h.ns, "redis-cli", "-h", h.ip, "-p", "26379",
				"SENTINEL", "GET-MASTER-ADDR-BY-NAME", rs.masterName)
			return err == nil && strings.Contains(out, lab.nodes[0].ip)
		})
	}
	return rs
}

// buildAgentBinary builds ./cmd/redhaven into dir (bounded) and returns
// its path.
func buildAgentBinary(t *testing.T, dir string) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = "/usr/local/go/bin/go"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, goBin, "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		t.Fatalf("go env GOMOD: not inside the module (%q)", gomod)
	}
	bin := filepath.Join(dir, "redhaven")
	build := exec.CommandContext(ctx, goBin, "build", "-o", bin, "./cmd/redhaven")
	build.Dir = filepath.Dir(gomod)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/redhaven: %v\n%s", err, out)
	}
	return bin
}

// agentEnv is the environment for agents: the test's, without REDHAVEN_*
// variables that would override their config files.
func agentEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, EnvPrefix) {
			env = append(env, kv)
		}
	}
	return env
}
