package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redhaven/redhaven/e2e/loadgen"
	"github.com/redhaven/redhaven/e2e/redistest"
	"github.com/redhaven/redhaven/e2e/testutil"
)

// realAgent is a `redhaven agent` process built from this package, with
// its successors after hand-overs (they write to the same log).
type realAgent struct {
	t       *testing.T
	bin     string
	cfgPath string
	logPath string
	proxy   string
	mu      sync.Mutex
}

// binDir holds the agent binary the tests build (removed by TestMain).
var binDir string

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

var buildOnce = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "rh-agent-bin-")
	if err != nil {
		return "", err
	}
	binDir = dir
	bin := filepath.Join(dir, "redhaven")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
})

// agentConfig is a single-node agent in front of one redis-server.
func agentConfig(t *testing.T, redisAddr, proxyAddr, level string, extra string) string {
	dir := t.TempDir()
	return fmt.Sprintf(`node_name: ho1
data_dir: %s
redis:
  nodes: [%q]
  check_interval: 100ms
proxy:
  listen: %s
http:
  listen: 127.0.0.1:%d
  admin_socket: %s
cluster:
  bind: 127.0.0.1:%d
  raft_bind: 127.0.0.1:%d
  bootstrap_expect: 1
log:
  level: %s
%s`, filepath.Join(dir, "data"), redisAddr, proxyAddr, testutil.FreePort(t), filepath.Join(dir, "admin.sock"),
		testutil.FreePort(t), testutil.FreePort(t), level, extra)
}

func startRealAgent(t *testing.T, cfg string) *realAgent {
	t.Helper()
	bin, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	return startAgentBinary(t, bin, cfg)
}

func startAgentBinary(t *testing.T, bin, cfg string) *realAgent {
	t.Helper()
	dir := t.TempDir()
	a := &realAgent{t: t, bin: bin, cfgPath: filepath.Join(dir, "c.yaml"), logPath: filepath.Join(dir, "agent.log")}
	a.writeConfig(cfg)
	logf, err := os.Create(a.logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(bin, "agent", "-c", a.cfgPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = cmd.Wait() }()
	t.Cleanup(a.stop)
	sect := strings.Index(cfg, "proxy:")
	if sect < 0 {
		sect = strings.Index(cfg, "services:") // the first service's listener
	}
	m := regexp.MustCompile(`listen:\s*(\S+)`).FindStringSubmatch(cfg[sect:])
	a.proxy = m[1]
	testutil.Eventually(t, 30*time.Second, "the agent routes", func() bool {
		c, err := net.DialTimeout("tcp", a.proxy, time.Second)
		if err != nil {
			return false
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(time.Second))
		_, _ = c.Write([]byte("PING\r\n"))
		line, _ := bufio.NewReader(c).ReadString('\n')
		return line == "+PONG\r\n"
	})
	return a
}

func (a *realAgent) writeConfig(cfg string) {
	if err := os.WriteFile(a.cfgPath, []byte(cfg), 0o600); err != nil {
		a.t.Fatal(err)
	}
}

func (a *realAgent) log() string {
	b, _ := os.ReadFile(a.logPath)
	return string(b)
}

var readyRE = regexp.MustCompile(`msg="agent ready" pid=(\d+)`)

// pid is the process that serves now (the last one that said ready).
func (a *realAgent) pid() int {
	all := readyRE.FindAllStringSubmatch(a.log(), -1)
	if len(all) == 0 {
		return 0
	}
	pid, _ := strconv.Atoi(all[len(all)-1][1])
	return pid
}

func (a *realAgent) signal(sig syscall.Signal) {
	a.t.Helper()
	pid := a.pid()
	if pid == 0 {
		a.t.Fatal("no agent pid in the log")
	}
	if err := syscall.Kill(pid, sig); err != nil {
		a.t.Fatalf("kill -%d %d: %v", sig, pid, err)
	}
}

// handOver sends SIGUSR2 and waits for the successor to be ready.
func (a *realAgent) handOver(sig syscall.Signal) (newPID int) {
	a.t.Helper()
	old := a.pid()
	before := strings.Count(a.log(), "hand-over done")
	a.signal(sig)
	testutil.Eventually(a.t, 30*time.Second, "the hand-over is done", func() bool {
		return strings.Count(a.log(), "hand-over done") > before && a.pid() != old
	})
	testutil.Eventually(a.t, 10*time.Second, "the old process exits", func() bool {
		return syscall.Kill(old, 0) != nil
	})
	return a.pid()
}

func (a *realAgent) stop() {
	pid := a.pid()
	if pid == 0 {
		return
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	for i := 0; i < 300 && syscall.Kill(pid, 0) == nil; i++ {
		time.Sleep(50 * time.Millisecond)
	}
	if syscall.Kill(pid, 0) == nil {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		a.t.Errorf("agent %d did not stop on SIGTERM", pid)
	}
	if a.t.Failed() {
		a.t.Logf("agent log:\n%s", a.log())
	}
}

type respConn struct {
	t  *testing.T
	c  net.Conn
	rd *bufio.Reader
}

func dialResp(t *testing.T, addr string) *respConn {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &respConn{t: t, c: c, rd: bufio.NewReader(c)}
}

// do sends an inline command and reads lines until want's line count.
func (r *respConn) do(cmd string, want ...string) {
	r.t.Helper()
	_ = r.c.SetDeadline(time.Now().Add(10 * time.Second))
	if cmd != "" {
		if _, err := r.c.Write([]byte(cmd + "\r\n")); err != nil {
			r.t.Fatalf("%s: %v", cmd, err)
		}
	}
	for _, w := range want {
		line, err := r.rd.ReadString('\n')
		if err != nil {
			r.t.Fatalf("%s: %v (want %q)", cmd, err, w)
		}
		if strings.TrimRight(line, "\r\n") != w {
			r.t.Fatalf("%s: got %q, want %q", cmd, line, w)
		}
	}
}

// SIGUSR2 on a real agent process: client connections (pipelined load,
// a SELECT/SETNAME session, a subscriber) survive two hand-overs.
func TestHandoverRestart(t *testing.T) {
	rs := redistest.StartServer(t, redistest.ServerOptions{})
	proxyAddr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	a := startRealAgent(t, agentConfig(t, rs.Addr, proxyAddr, "info", ""))

	state := dialResp(t, proxyAddr)
	state.do("SELECT 3", "+OK")
	state.do("CLIENT SETNAME ho-client", "+OK")
	state.do("SET hokey in-db-3", "+OK")
	sub := dialResp(t, proxyAddr)
	sub.do("SUBSCRIBE hoch", "*3", "$9", "subscribe", "$4", "hoch", ":1")

	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	defer cancel()
	loadDone := make(chan loadgen.Result, 1)
	go func() { loadDone <- loadgen.Run(ctx, loadgen.Options{Addr: proxyAddr, Conns: 4, Pipeline: 16}) }()
	pids := []int{a.pid()}
	for range 2 {
		time.Sleep(2 * time.Second)
		pids = append(pids, a.handOver(syscall.SIGUSR2))
	}
	res := <-loadDone
	t.Logf("load across 2 hand-overs (pids %v): %s", pids, res)
	if res.Drops != 0 || res.Misordered != 0 || res.Replies < 100 {
		t.Fatalf("load: %s %v", res, res.Errors)
	}
	if res.MaxPause > 2*time.Second {
		t.Errorf("longest pause %s", res.MaxPause)
	}
	state.do("CLIENT GETNAME", "$9", "ho-client")
	state.do("GET hokey", "$7", "in-db-3")
	rc := rs.Client()
	testutil.Eventually(t, 5*time.Second, "the subscription is back", func() bool {
		n, err := rc.Publish(context.Background(), "hoch", "after").Result()
		return err == nil && n == 1
	})
	sub.do("", "*3", "$7", "message", "$4", "hoch", "$5", "after")
	if !strings.Contains(a.log(), "sessions=6 closed=0") {
		t.Errorf("the log does not say that 6 sessions were handed over and none closed")
	}
}

// SIGHUP: log.level and the other live keys apply live (same process); a
// key that cannot change live makes a hand-over restart, and the log names
// it.
func TestReloadKeys(t *testing.T) {
	rs := redistest.StartServer(t, redistest.ServerOptions{})
	proxyAddr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	cfg := agentConfig(t, rs.Addr, proxyAddr, "info", "")
	a := startRealAgent(t, cfg)
	c := dialResp(t, proxyAddr)
	c.do("PING", "+PONG")
	pid := a.pid()

	a.writeConfig(strings.Replace(cfg, "level: info", "level: debug", 1))
	a.signal(syscall.SIGHUP)
	testutil.Eventually(t, 10*time.Second, "the reload is logged", func() bool {
		return strings.Contains(a.log(), `msg="reload: applied live" keys=[log.level]`)
	})
	dialResp(t, proxyAddr).do("PING", "+PONG")
	testutil.Eventually(t, 5*time.Second, "debug lines after the reload", func() bool {
		return strings.Contains(a.log(), "level=DEBUG")
	})
	if a.pid() != pid {
		t.Fatalf("log.level restarted the agent (%d -> %d)", pid, a.pid())
	}

	cfg = strings.Replace(cfg, "level: info", "level: debug", 1)
	cfg = strings.Replace(cfg, "proxy:\n", "proxy:\n  hold_timeout: 4s\n  max_clients: 999\n", 1)
	a.writeConfig(cfg)
	a.signal(syscall.SIGHUP)
	testutil.Eventually(t, 10*time.Second, "the reload is logged", func() bool {
		return strings.Contains(a.log(), `msg="reload: applied live" keys="[proxy.hold_timeout proxy.max_clients]"`)
	})
	if a.pid() != pid {
		t.Fatalf("hold_timeout and max_clients restarted the agent")
	}

	// the bounds and read-only routing keys are live too
	cfg = strings.Replace(cfg, "proxy:\n", "proxy:\n  client_idle_timeout: 1h\n  max_clients_per_ip: 50\n  prefer_replica: 127.0.0.1:1\n", 1)
	a.writeConfig(cfg)
	a.signal(syscall.SIGHUP)
	testutil.Eventually(t, 10*time.Second, "the reload is logged", func() bool {
		return strings.Contains(a.log(), `msg="reload: applied live" keys="[proxy.client_idle_timeout proxy.max_clients_per_ip proxy.prefer_replica]"`)
	})
	c.do("PING", "+PONG")
	if a.pid() != pid {
		t.Fatalf("client_idle_timeout, max_clients_per_ip and prefer_replica restarted the agent")
	}

	cfg = strings.Replace(cfg, "proxy:\n", "proxy:\n  dial_timeout: 3s\n", 1)
	cfg = strings.Replace(cfg, "check_interval: 100ms", "check_interval: 200ms", 1)
	a.writeConfig(cfg)
	newPID := a.handOver(syscall.SIGHUP)
	if !strings.Contains(a.log(), `msg="reload: these keys cannot change live; hand-over restart" keys="[proxy.dial_timeout redis.check_interval]"`) {
		t.Errorf("the log does not name the keys that caused the restart")
	}
	if newPID == pid {
		t.Errorf("no new process")
	}
	c.do("PING", "+PONG") // the connection survived the restart

	// an invalid config changes nothing
	a.writeConfig(strings.Replace(cfg, "hold_timeout: 4s", "hold_timeout: soon", 1))
	a.signal(syscall.SIGHUP)
	testutil.Eventually(t, 10*time.Second, "the bad config is reported", func() bool {
		return strings.Contains(a.log(), "reload: the config is not valid; nothing changed")
	})
	c.do("PING", "+PONG")
	if a.pid() != newPID {
		t.Errorf("a bad config restarted the agent")
	}
}

// replaceFile puts content at path the way a package upgrade does: a new
// file renamed over the old one (the running binary keeps its inode).
func replaceFile(t *testing.T, path string, content []byte) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, content, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// A new binary that cannot start: the running agent goes on serving. A
// working new binary: SIGHUP sees it changed and hands over to it.
func TestHandoverNewBinary(t *testing.T) {
	built, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	good, err := os.ReadFile(built)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "redhaven")
	replaceFile(t, bin, good)
	rs := redistest.StartServer(t, redistest.ServerOptions{})
	proxyAddr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	a := startAgentBinary(t, bin, agentConfig(t, rs.Addr, proxyAddr, "info", ""))
	c := dialResp(t, proxyAddr)
	c.do("PING", "+PONG")
	pid := a.pid()

	replaceFile(t, bin, []byte("#!/bin/sh\necho broken upgrade >&2\nexit 3\n"))
	a.signal(syscall.SIGUSR2)
	testutil.Eventually(t, 20*time.Second, "the failed start is logged", func() bool {
		return strings.Contains(a.log(), "the new process did not start")
	})
	c.do("PING", "+PONG")
	if a.pid() != pid || syscall.Kill(pid, 0) != nil {
		t.Fatalf("the agent did not go on after a failed hand-over")
	}

	replaceFile(t, bin, append(good[:len(good):len(good)], 0)) // another binary (a byte more)
	newPID := a.handOver(syscall.SIGHUP)
	if !regexp.MustCompile(`reload: these keys cannot change live; hand-over restart" keys="\[binary [^]]*redhaven\]"`).MatchString(a.log()) {
		t.Errorf("the reload does not name the binary as the reason")
	}
	c.do("PING", "+PONG")
	if newPID == pid {
		t.Errorf("no new process")
	}
}

// TestHandoverSeveralServices: an agent running two services (no
// Sentinel: two redis-servers as the services' nodes) hands both over on
// SIGUSR2: a client of each, with its own session state, and a pipelined
// load on each listener go on without an error. Then a reload that
// removes b and adds c: a's client goes on, b's is closed, c serves.
func TestHandoverSeveralServices(t *testing.T) {
	ra := redistest.StartServer(t, redistest.ServerOptions{})
	rb := redistest.StartServer(t, redistest.ServerOptions{})
	la := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	lb := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	dir := t.TempDir()
	cfg := twoServicesConfig(t, dir, la, ra.Addr, lb, rb.Addr)
	a := startRealAgent(t, cfg)
	waitServes(t, lb)

	ca, cb := dialResp(t, la), dialResp(t, lb)
	ca.do("SELECT 2", "+OK")
	ca.do("SET ka in-a", "+OK")
	cb.do("CLIENT SETNAME b-client", "+OK")
	cb.do("SET kb in-b", "+OK")

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	loads := make(chan loadgen.Result, 2)
	for _, l := range []string{la, lb} {
		go func() { loads <- loadgen.Run(ctx, loadgen.Options{Addr: l, Conns: 2, Pipeline: 8}) }()
	}
	time.Sleep(1500 * time.Millisecond)
	pids := []int{a.pid(), a.handOver(syscall.SIGUSR2)}
	for range 2 {
		res := <-loads
		t.Logf("load across the hand-over (pids %v): %s", pids, res)
		if res.Drops != 0 || res.Misordered != 0 || res.Replies < 100 {
			t.Fatalf("load: %s %v", res, res.Errors)
		}
	}
	ca.do("GET ka", "$4", "in-a")
	cb.do("CLIENT GETNAME", "$8", "b-client")
	cb.do("GET kb", "$4", "in-b")
	if log := a.log(); !strings.Contains(log, "services=2 sessions=6") {
		t.Errorf("the log does not say that 2 services with 6 sessions were handed over")
	}

	// reload: b removed, c added (in front of b's redis)
	lc := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	cfg = strings.Replace(cfg, "  - name: b\n    listen: "+lb, "  - name: c\n    listen: "+lc, 1)
	a.writeConfig(cfg)
	a.handOver(syscall.SIGHUP)
	ca.do("GET ka", "$4", "in-a")
	_ = cb.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := cb.c.Write([]byte("PING\r\n")); err == nil {
		if line, err := cb.rd.ReadString('\n'); err == nil {
			t.Errorf("the client of the removed service b still served: %q", line)
		}
	}
	waitServes(t, lc)
	if c, err := net.DialTimeout("tcp", lb, time.Second); err == nil {
		c.Close()
		t.Errorf("b's listener %s still accepts", lb)
	}
	if log := a.log(); !strings.Contains(log, `msg="hand-over: service no longer configured; its listeners and client connections are closed" service=b listeners=1 sessions=1`) ||
		!strings.Contains(log, `msg="hand-over: service new in the config; it starts with no client connections" service=c`) {
		t.Errorf("the log does not say that b was closed and c started")
	}
}

// waitServes waits for a SET to be answered on the proxy listener l.
func waitServes(t *testing.T, l string) {
	t.Helper()
	testutil.Eventually(t, 30*time.Second, "service on "+l+" serves", func() bool {
		c, err := net.DialTimeout("tcp", l, time.Second)
		if err != nil {
			return false
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(time.Second))
		_, _ = c.Write([]byte("SET k " + l + "\r\n"))
		line, _ := bufio.NewReader(c).ReadString('\n')
		return line == "+OK\r\n"
	})
}

// twoServicesConfig is an agent with two services without Sentinel: a on
// listener la in front of redis ra, b on lb in front of rb.
func twoServicesConfig(t *testing.T, dir, la, ra, lb, rb string) string {
	return fmt.Sprintf(`node_name: two1
data_dir: %s
redis:
  check_interval: 100ms
http:
  listen: 127.0.0.1:%d
  admin_socket: %s
cluster:
  bind: 127.0.0.1:%d
  raft_bind: 127.0.0.1:%d
  bootstrap_expect: 1
services:
  - name: a
    listen: %s
    nodes: [%q]
  - name: b
    listen: %s
    nodes: [%q]
`, filepath.Join(dir, "data"), testutil.FreePort(t), filepath.Join(dir, "admin.sock"), testutil.FreePort(t), testutil.FreePort(t),
		la, ra, lb, rb)
}

// TestHandoverIntoSeveralServices: a single-service agent whose config
// file now has two services hands over to a process that runs both: the
// client of the one service (same name, same listener) goes on, and the
// new service starts.
func TestHandoverIntoSeveralServices(t *testing.T) {
	rs := redistest.StartServer(t, redistest.ServerOptions{})
	rb := redistest.StartServer(t, redistest.ServerOptions{})
	proxyAddr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	a := startRealAgent(t, agentConfig(t, rs.Addr, proxyAddr, "info", ""))
	c := dialResp(t, proxyAddr)
	c.do("SELECT 5", "+OK")
	c.do("SET k5 five", "+OK")
	lb := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	cfg := twoServicesConfig(t, t.TempDir(), proxyAddr, rs.Addr, lb, rb.Addr)
	a.writeConfig(strings.Replace(cfg, "  - name: a\n", "  - name: mymaster\n", 1))
	a.handOver(syscall.SIGUSR2)
	c.do("GET k5", "$4", "five")
	waitServes(t, lb)
	if log := a.log(); !strings.Contains(log, "hand-over: service new in the config") {
		t.Errorf("the log does not say that service b is new")
	}
}
