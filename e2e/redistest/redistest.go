// Package redistest starts real redis-server and redis-sentinel processes on
// free loopback ports for tests, and stops them (by PID) when the test ends.
package redistest

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redhaven/redhaven/e2e/testutil"
	"github.com/redis/go-redis/v9"
)

// RequireRedis skips (or fails, see Require) unless redis-server and
// redis-sentinel are on PATH.
func RequireRedis(t testing.TB) {
	t.Helper()
	for _, bin := range []string{"redis-server", "redis-sentinel"} {
		if _, err := exec.LookPath(bin); err != nil {
			testutil.Require(t, "redis", bin+" not on PATH (apt-get install redis-server redis-sentinel)")
		}
	}
}

// Server is one redis-server or redis-sentinel process.
type Server struct {
	t    testing.TB
	Port int
	Addr string // 127.0.0.1:port
	Dir  string
	bin  string
	args []string
	pass string // requirepass, used by Client and readiness checks
	tls  *TLS   // TLS only, when set

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// ServerOptions configure StartServer.
type ServerOptions struct {
	// ReplicaOf is "host:port" of the master, or "".
	ReplicaOf string
	// Password sets requirepass and masterauth.
	Password string
	// Extra are more "--key value" arguments, e.g. {"--maxmemory", "1gb"}.
	Extra []string
	// TLS, when set, serves TLS only on the port (tls.go).
	TLS *TLS
}

// StartServer starts a redis-server on a free loopback port.
func StartServer(t testing.TB, opt ServerOptions) *Server {
	t.Helper()
	RequireRedis(t)
	port := testutil.FreePort(t)
	dir := t.TempDir()
	args := []string{
		"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--protected-mode", "no",
		"--save", "", "--appendonly", "no", "--dir", dir, "--daemonize", "no",
		"--logfile", filepath.Join(dir, "redis.log"),
	}
	if opt.Password != "" {
		args = append(args, "--requirepass", opt.Password, "--masterauth", opt.Password)
	}
	if opt.ReplicaOf != "" {
		host, p, _ := net.SplitHostPort(opt.ReplicaOf)
		args = append(args, "--replicaof", host, p)
	}
	if opt.TLS != nil {
		args = append(args[2:], opt.TLS.serverArgs(strconv.Itoa(port))...)
	}
	args = append(args, opt.Extra...)
	s := &Server{t: t, Port: port, Addr: fmt.Sprintf("127.0.0.1:%d", port), Dir: dir, bin: "redis-server", args: args, pass: opt.Password, tls: opt.TLS}
	s.start()
	s.waitReady(opt.Password)
	t.Cleanup(s.Kill)
	return s
}

func (s *Server) start() {
	s.t.Helper()
	cmd := exec.Command(s.bin, s.args...)
	cmd.Dir = s.Dir
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start %s: %v", s.bin, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	s.mu.Lock()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()
}

func (s *Server) waitReady(password string) {
	s.t.Helper()
	c := redis.NewClient(&redis.Options{Addr: s.Addr, Password: password, Protocol: 2, MaxRetries: -1, DialTimeout: 200 * time.Millisecond, TLSConfig: s.tlsConfig()})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.t.Fatalf("%s on %s not ready after 10s; log:\n%s", s.bin, s.Addr, s.Log())
}

// Kill sends SIGKILL to the process (kill -9) and waits until it is gone.
// It is safe to call more than once.
func (s *Server) Kill() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return
	}
	_ = cmd.Process.Kill()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
	}
}

// Restart starts the process again on the same port with the same
// arguments it was first started with (a restarted old master comes back
// as a master, as after a reboot with its original config).
func (s *Server) Restart() {
	s.t.Helper()
	s.Kill()
	s.start()
	s.waitReady(s.password())
}

func (s *Server) password() string { return s.pass }

// tlsConfig is the client TLS configuration for this process (nil: plain).
func (s *Server) tlsConfig() *tls.Config {
	if s.tls == nil {
		return nil
	}
	return s.tls.ClientConfig()
}

// PID of the running process.
func (s *Server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd.Process.Pid
}

// Log returns the process's log file.
func (s *Server) Log() string {
	b, _ := os.ReadFile(filepath.Join(s.Dir, map[string]string{"redis-server": "redis.log", "redis-sentinel": "sentinel.log"}[s.bin]))
	return string(b)
}

// Client returns a go-redis client for this process, closed at cleanup.
func (s *Server) Client() *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: s.Addr, Password: s.password(), Protocol: 2, MaxRetries: -1, DisableIdentity: true, TLSConfig: s.tlsConfig()})
	s.t.Cleanup(func() { c.Close() })
	return c
}

// SetOptions configure StartSet.
type SetOptions struct {
	Replicas         int // default 2
	Sentinels        int // default 3; 0 is allowed with NoSentinel
	NoSentinel       bool
	MasterName       string        // default "mymaster"
	DownAfter        time.Duration // default 1s
	FailoverTimeout  time.Duration // default 6s
	Password         string        // requirepass on every redis (and auth-pass for sentinels)
	SentinelPassword string        // requirepass on every sentinel
	TLS              *TLS          // TLS only, for every redis and sentinel (tls.go)
}

// Set is a master, its replicas and the Sentinels that watch them.
type Set struct {
	MasterName string
	Master     *Server
	Replicas   []*Server
	Sentinels  []*Server
	t          testing.TB
}

// StartSet starts a master, replicas and Sentinels and waits until the
// replicas are in sync and every Sentinel sees all replicas and peers.
func StartSet(t testing.TB, opt SetOptions) *Set {
	t.Helper()
	if opt.Replicas == 0 {
		opt.Replicas = 2
	}
	if opt.Sentinels == 0 && !opt.NoSentinel {
		opt.Sentinels = 3
	}
	if opt.MasterName == "" {
		opt.MasterName = "mymaster"
	}
	if opt.DownAfter == 0 {
		opt.DownAfter = time.Second
	}
	if opt.FailoverTimeout == 0 {
		opt.FailoverTimeout = 6 * time.Second
	}
	set := &Set{MasterName: opt.MasterName, t: t}
	set.Master = StartServer(t, ServerOptions{Password: opt.Password, TLS: opt.TLS})
	for i := 0; i < opt.Replicas; i++ {
		set.Replicas = append(set.Replicas, StartServer(t, ServerOptions{ReplicaOf: set.Master.Addr, Password: opt.Password, TLS: opt.TLS}))
	}
	for _, r := range set.Replicas {
		testutil.Eventually(t, 15*time.Second, "replica "+r.Addr+" link up", func() bool {
			info, err := r.Client().Info(context.Background(), "replication").Result()
			return err == nil && strings.Contains(info, "master_link_status:up")
		})
	}
	quorum := opt.Sentinels/2 + 1
	for i := 0; i < opt.Sentinels; i++ {
		set.Sentinels = append(set.Sentinels, startSentinel(t, set.Master.Addr, opt, quorum))
	}
	for _, s := range set.Sentinels {
		s := s
		testutil.Eventually(t, 20*time.Second, "sentinel "+s.Addr+" sees replicas and peers", func() bool {
			c := s.Client()
			m, err := c.Do(context.Background(), "SENTINEL", "MASTER", opt.MasterName).Result()
			if err != nil {
				return false
			}
			fields := flatMap(m)
			return fields["num-slaves"] == strconv.Itoa(opt.Replicas) && fields["num-other-sentinels"] == strconv.Itoa(opt.Sentinels-1)
		})
	}
	return set
}

func startSentinel(t testing.TB, masterAddr string, opt SetOptions, quorum int) *Server {
	t.Helper()
	port := testutil.FreePort(t)
	dir := t.TempDir()
	host, mport, _ := net.SplitHostPort(masterAddr)
	conf := []string{
		fmt.Sprintf("port %d", port),
		"bind 127.0.0.1",
		"daemonize no",
		"logfile " + filepath.Join(dir, "sentinel.log"),
		"dir " + dir,
		fmt.Sprintf("sentinel monitor %s %s %s %d", opt.MasterName, host, mport, quorum),
		fmt.Sprintf("sentinel down-after-milliseconds %s %d", opt.MasterName, opt.DownAfter.Milliseconds()),
		fmt.Sprintf("sentinel failover-timeout %s %d", opt.MasterName, opt.FailoverTimeout.Milliseconds()),
		fmt.Sprintf("sentinel parallel-syncs %s 1", opt.MasterName),
	}
	if opt.TLS != nil {
		conf = append(conf[1:], opt.TLS.sentinelConf(port)...)
	}
	if opt.Password != "" {
		conf = append(conf, fmt.Sprintf("sentinel auth-pass %s %s", opt.MasterName, opt.Password))
	}
	if opt.SentinelPassword != "" {
		conf = append(conf, "requirepass "+opt.SentinelPassword, "sentinel sentinel-pass "+opt.SentinelPassword)
	}
	path := filepath.Join(dir, "sentinel.conf")
	if err := os.WriteFile(path, []byte(strings.Join(conf, "\n")+"\n"), 0o644); err != nil {
		t.Fatalf("write sentinel config: %v", err)
	}
	s := &Server{t: t, Port: port, Addr: fmt.Sprintf("127.0.0.1:%d", port), Dir: dir, bin: "redis-sentinel", args: []string{path}, pass: opt.SentinelPassword, tls: opt.TLS}
	s.start()
	s.waitReady(opt.SentinelPassword)
	t.Cleanup(s.Kill)
	return s
}

// Addrs returns the addresses of servers.
func Addrs(servers []*Server) []string {
	out := make([]string, len(servers))
	for i, s := range servers {
		out[i] = s.Addr
	}
	return out
}

// CurrentMaster asks the first reachable Sentinel for the master address.
func (set *Set) CurrentMaster() string {
	for _, s := range set.Sentinels {
		c := redis.NewClient(&redis.Options{Addr: s.Addr, Password: s.password(), Protocol: 2, DialTimeout: 200 * time.Millisecond, DisableIdentity: true, TLSConfig: s.tlsConfig()})
		res, err := c.Do(context.Background(), "SENTINEL", "GET-MASTER-ADDR-BY-NAME", set.MasterName).StringSlice()
		c.Close()
		if err == nil && len(res) == 2 {
			return net.JoinHostPort(res[0], res[1])
		}
	}
	return ""
}

// ByAddr returns the redis server (master or replica) with that address.
func (set *Set) ByAddr(addr string) *Server {
	for _, s := range append([]*Server{set.Master}, set.Replicas...) {
		if s.Addr == addr {
			return s
		}
	}
	return nil
}

// flatMap turns a RESP2 flat array of key/value pairs into a map.
func flatMap(v any) map[string]string {
	out := map[string]string{}
	switch x := v.(type) {
	case []any:
		for i := 0; i+1 < len(x); i += 2 {
			out[fmt.Sprint(x[i])] = fmt.Sprint(x[i+1])
		}
	case map[any]any:
		for k, val := range x {
			out[fmt.Sprint(k)] = fmt.Sprint(val)
		}
	}
	return out
}

// TailLog returns the last n lines of the process log (for failure messages).
func (s *Server) TailLog(n int) string {
	sc := bufio.NewScanner(strings.NewReader(s.Log()))
	var lines []string
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
