package node

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redhaven/redhaven/e2e/redistest"
	"github.com/redhaven/redhaven/e2e/testutil"
	"github.com/redis/go-redis/v9"
)

// TestAgentTLS: redis.tls and proxy.tls wired through the agent: Redis and
// Sentinel on TLS only, TLS clients; writes go on after kill -9 of the
// master (Sentinel's failover, seen over TLS).
func TestAgentTLS(t *testing.T) {
	x := redistest.NewTLS(t)
	set := redistest.StartSet(t, redistest.SetOptions{TLS: x, Replicas: 1})
	cfg := agentConfig(t, set)
	cfg.Redis.TLS.Enabled, cfg.Redis.TLS.CAFile = true, x.CAFile
	cert, key := x.Issue(t, "proxy", "proxy")
	cfg.Proxy.TLS.Enabled, cfg.Proxy.TLS.CertFile, cfg.Proxy.TLS.KeyFile = true, cert, key
	n := startAgent(t, cfg)
	c := redis.NewClient(&redis.Options{
		Addr: n.ProxyAddr().String(), Protocol: 2, DisableIdentity: true, MaxRetries: -1,
		ReadTimeout: 10 * time.Second, DialTimeout: time.Second,
		TLSConfig: &tls.Config{RootCAs: x.Pool, ServerName: "127.0.0.1"},
	})
	defer c.Close()
	ctx := context.Background()
	testutil.Eventually(t, 15*time.Second, "a write through the TLS proxy", func() bool {
		return c.Set(ctx, "k", "before", 0).Err() == nil
	})
	if v, err := set.Master.Client().Get(ctx, "k").Result(); err != nil || v != "before" {
		t.Fatalf("master has %q, %v", v, err)
	}
	old := set.Master.Addr
	set.Master.Kill()
	testutil.Eventually(t, 30*time.Second, "writes reach a new master", func() bool {
		m := set.CurrentMaster()
		if m == "" || m == old || c.Set(ctx, "k", "after", 0).Err() != nil {
			return false
		}
		v, err := set.ByAddr(m).Client().Get(ctx, "k").Result()
		return err == nil && v == "after"
	})
}

// TestAgentRedisTLSReload: redis.tls's certificate and CA rotated while
// the agent runs. Redis switches to a server certificate of a new CA and
// trusts only that CA for clients (tls-auth-clients yes); before the
// reload the agent's new backend connections fail, after ReloadTLS (what
// SIGHUP calls) new proxy connections and new watcher links get through,
// while a client connected before keeps its backend connection with no
// error. A reload with a missing certificate file keeps the files in use
// and logs an error naming the file.
func TestAgentRedisTLSReload(t *testing.T) {
	ca1 := redistest.NewTLS(t)
	set := redistest.StartSet(t, redistest.SetOptions{TLS: ca1, Replicas: 1, NoSentinel: true})
	dir := t.TempDir()
	caFile, certFile, keyFile := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "agent.crt"), filepath.Join(dir, "agent.key")
	c1, k1 := ca1.Issue(t, "agent", "agent")
	copyFile(t, ca1.CAFile, caFile)
	copyFile(t, c1, certFile)
	copyFile(t, k1, keyFile)

	cfg := agentConfig(t, set)
	cfg.Redis.Sentinels = nil
	cfg.Redis.Nodes = []string{set.Master.Addr, set.Replicas[0].Addr}
	cfg.Redis.TLS.Enabled, cfg.Redis.TLS.CAFile, cfg.Redis.TLS.CertFile, cfg.Redis.TLS.KeyFile = true, caFile, certFile, keyFile
	cfg.Proxy.Multiplex = false // each client its own backend connection: a new client dials
	cfg.Proxy.HoldTimeout = time.Second
	var log lockedBuffer
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("agent log:\n%s", log.String())
		}
	})
	n := startAgentLogger(t, cfg, slog.New(slog.NewTextHandler(&log, &slog.HandlerOptions{Level: slog.LevelInfo})))
	addr := n.ProxyAddr().String()
	ctx := context.Background()

	before := client(addr)
	defer before.Close()
	testutil.Eventually(t, 15*time.Second, "a write through the proxy (CA 1)", func() bool {
		return before.Set(ctx, "k", "before", 0).Err() == nil
	})
	id, err := before.Do(ctx, "CLIENT", "ID").Int64()
	if err != nil {
		t.Fatal(err)
	}

	// Redis moves to CA 2: its own certificate, and the only CA its
	// clients may chain to. Connections already made stay.
	ca2 := redistest.NewTLS(t)
	c2, k2 := ca2.Issue(t, "agent", "agent")
	master := set.Master.Client()
	if err := master.Do(ctx, "CONFIG", "SET", "tls-cert-file", ca2.CertFile, "tls-key-file", ca2.KeyFile,
		"tls-ca-cert-file", ca2.CAFile, "tls-auth-clients", "yes").Err(); err != nil {
		b, _ := os.ReadFile(filepath.Join(set.Master.Dir, "redis.log"))
		t.Fatalf("CONFIG SET: %v; redis log:\n%s", err, b)
	}
	// Redis now refuses CA 1's client certificate and takes CA 2's.
	if err := pingTLS(set.Master.Addr, clientTLS(t, ca2, c1, k1)); err == nil {
		t.Fatal("Redis accepts a client certificate of CA 1 after CONFIG SET")
	}
	if err := pingTLS(set.Master.Addr, clientTLS(t, ca2, c2, k2)); err != nil {
		t.Fatalf("Redis refuses a client certificate of CA 2: %v", err)
	}
	// The agent still has CA 1's files: a new backend connection fails.
	early := client(addr)
	defer early.Close()
	if err := early.Set(ctx, "k", "early", 0).Err(); err == nil {
		t.Fatal("a new connection got through before the reload (the test cannot tell)")
	} else {
		t.Logf("before the reload, a new client gets: %v", err)
	}

	// The agent's files rotate: CA 2's client certificate, and both CAs
	// (the replica still serves CA 1's certificate).
	copyFile(t, c2, certFile)
	copyFile(t, k2, keyFile)
	writeBytes(t, caFile, append(readBytes(t, ca1.CAFile), readBytes(t, ca2.CAFile)...))
	if err := n.ReloadTLS(); err != nil {
		t.Fatalf("ReloadTLS: %v", err)
	}
	if !strings.Contains(log.String(), `msg="redis TLS files reloaded"`) {
		t.Error("the reload is not logged")
	}
	after := client(addr)
	defer after.Close()
	if err := after.Set(ctx, "k", "after", 0).Err(); err != nil {
		t.Fatalf("a new client after the reload: %v", err)
	}
	// The client connected before keeps its backend connection.
	if err := before.Set(ctx, "k", "before-again", 0).Err(); err != nil {
		t.Fatalf("the client connected before the reload: %v", err)
	}
	if id2, err := before.Do(ctx, "CLIENT", "ID").Int64(); err != nil || id2 != id {
		t.Fatalf("the earlier client's backend connection: id %d, was %d (%v)", id2, id, err)
	}

	// New watcher links use the new files too: every client connection
	// of the master is killed, and the ROLE probe comes back.
	admin := redis.NewClient(&redis.Options{Addr: set.Master.Addr, Protocol: 2, DisableIdentity: true, TLSConfig: clientTLS(t, ca2, c2, k2)})
	defer admin.Close()
	if err := admin.Do(ctx, "CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes").Err(); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "the watcher's ROLE probe reconnects", func() bool {
		list, err := admin.ClientList(ctx).Result()
		return err == nil && strings.Contains(list, "cmd=role")
	})

	// A reload that cannot read the certificate keeps the one in use.
	if err := os.Remove(certFile); err != nil {
		t.Fatal(err)
	}
	err = n.ReloadTLS()
	if err == nil || !strings.Contains(err.Error(), certFile) {
		t.Fatalf("ReloadTLS with the certificate missing: %v (want an error naming %s)", err, certFile)
	}
	if l := log.String(); !strings.Contains(l, `level=ERROR msg="redis TLS files reload failed; keeping the ones in use"`) || !strings.Contains(l, certFile) {
		t.Error("the failed reload is not logged as an error naming the file")
	}
	last := client(addr)
	defer last.Close()
	if err := last.Set(ctx, "k", "last", 0).Err(); err != nil {
		t.Fatalf("a new client after the failed reload: %v", err)
	}
}

// clientTLS trusts x's CA and presents the certificate in certFile.
func clientTLS(t *testing.T, x *redistest.TLS, certFile, keyFile string) *tls.Config {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{RootCAs: x.Pool, ServerName: "127.0.0.1", Certificates: []tls.Certificate{cert}}
}

// pingTLS sends PING on a new TLS connection (TLS 1.3 reports a refused
// client certificate at the first read, not at the handshake).
func pingTLS(addr string, cfg *tls.Config) error {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	if err != nil {
		return err
	}
	if string(buf[:n]) != "+PONG\r\n" {
		return fmt.Errorf("PING: %q", buf[:n])
	}
	return nil
}

func readBytes(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// writeBytes replaces path by a rename, as certificate tools do.
func writeBytes(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path+".tmp", b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
}

func copyFile(t *testing.T, from, to string) { t.Helper(); writeBytes(t, to, readBytes(t, from)) }

// lockedBuffer is a log destination the test reads while the agent writes.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
