package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/redhaven/redhaven/e2e/redistest"
	"github.com/redhaven/redhaven/e2e/testutil"
	"github.com/redis/go-redis/v9"
)

// tlsProxyConfig: TLS on both listeners with a certificate of x's CA, and
// TLS to Redis.
func tlsProxyConfig(t *testing.T, x *redistest.TLS, multiplex bool) Config {
	cfg := testConfig()
	cfg.Multiplex = multiplex
	cfg.ReadonlyListen = "127.0.0.1:0"
	cert, key := x.Issue(t, "proxy", "proxy-1")
	cfg.TLS = TLSConfig{Enabled: true, CertFile: cert, KeyFile: key, MinVersion: "1.2"}
	cfg.BackendTLS = func(string) *tls.Config {
		return &tls.Config{RootCAs: x.Pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
	}
	return cfg
}

func tlsClient(t *testing.T, addr string, x *redistest.TLS, cert bool) *redis.Client {
	tc := &tls.Config{RootCAs: x.Pool, ServerName: "127.0.0.1"}
	if cert {
		tc = x.ClientConfig()
	}
	return proxyClient(t, addr, &redis.Options{TLSConfig: tc, Protocol: 2, DisableIdentity: true})
}

func multiplexModes(t *testing.T, f func(t *testing.T, multiplex bool)) {
	for _, m := range []bool{true, false} {
		t.Run(fmt.Sprintf("multiplex=%v", m), func(t *testing.T) { f(t, m) })
	}
}

// TestTLSRoundTrip: clients on both TLS listeners reach a TLS-only Redis
// master and replica through the proxy.
func TestTLSRoundTrip(t *testing.T) {
	x := redistest.NewTLS(t)
	master := redistest.StartServer(t, redistest.ServerOptions{TLS: x})
	replica := redistest.StartServer(t, redistest.ServerOptions{TLS: x, ReplicaOf: master.Addr})
	multiplexModes(t, func(t *testing.T, multiplex bool) {
		srv := startProxy(t, tlsProxyConfig(t, x, multiplex), newRoutes(master.Addr, replica.Addr))
		ctx := context.Background()
		rw := tlsClient(t, srv.Addr().String(), x, false)
		key := fmt.Sprintf("k-%v", multiplex)
		if err := rw.Set(ctx, key, "v1", 0).Err(); err != nil {
			t.Fatalf("SET through TLS: %v", err)
		}
		if v, err := master.Client().Get(ctx, key).Result(); err != nil || v != "v1" {
			t.Fatalf("master has %q, %v", v, err)
		}
		// a pipeline of 200 commands, answered in order
		p := rw.Pipeline()
		cmds := make([]*redis.IntCmd, 200)
		for i := range cmds {
			cmds[i] = p.Incr(ctx, key+"-n")
		}
		if _, err := p.Exec(ctx); err != nil {
			t.Fatal(err)
		}
		for i, c := range cmds {
			if c.Val() != int64(i+1) {
				t.Fatalf("reply %d is %d", i, c.Val())
			}
		}
		ro := tlsClient(t, srv.ReadonlyAddr().String(), x, false)
		testutil.Eventually(t, 10*time.Second, "read-only listener reads the replica", func() bool {
			v, err := ro.Get(ctx, key).Result()
			return err == nil && v == "v1"
		})
		if err := ro.Set(ctx, key, "v2", 0).Err(); err == nil || !strings.Contains(err.Error(), "READONLY") {
			t.Fatalf("write on the read-only listener: %v, want READONLY", err)
		}
		// A plain-TCP client is refused: it gets no Redis reply.
		plain := proxyClient(t, srv.Addr().String(), &redis.Options{DialTimeout: time.Second, ReadTimeout: 2 * time.Second, Protocol: 2, DisableIdentity: true})
		if err := plain.Ping(ctx).Err(); err == nil {
			t.Fatal("a plain-TCP client got an answer from a TLS listener")
		}
	})
}

// TestTLSSlowReader: a TLS client that sends a long pipeline and reads
// nothing must not stall other clients on the shared backend connection.
func TestTLSSlowReader(t *testing.T) {
	x := redistest.NewTLS(t)
	master := redistest.StartServer(t, redistest.ServerOptions{TLS: x})
	multiplexModes(t, func(t *testing.T, multiplex bool) {
		srv := startProxy(t, tlsProxyConfig(t, x, multiplex), newRoutes(master.Addr))
		ctx := context.Background()
		if err := master.Client().Set(ctx, "big", strings.Repeat("x", 64<<10), 0).Err(); err != nil {
			t.Fatal(err)
		}
		c, err := tls.Dial("tcp", srv.Addr().String(), &tls.Config{RootCAs: x.Pool, ServerName: "127.0.0.1"})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		req := []byte(strings.Repeat("*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n", 100))
		go func() {
			for i := 0; i < 10; i++ { // 1000 x 64 KiB of replies, never read
				if _, err := c.Write(req); err != nil {
					return
				}
			}
		}()
		time.Sleep(500 * time.Millisecond)
		other := proxyClient(t, srv.Addr().String(), &redis.Options{TLSConfig: &tls.Config{RootCAs: x.Pool, ServerName: "127.0.0.1"},
			Protocol: 2, DisableIdentity: true, ReadTimeout: 10 * time.Second})
		// With multiplexing the slow reader moves to its own connection
		// after 128 GETs (muxMaxDue), so the INCRs no longer queue behind
		// ~64 MB of its replies (3.3-4.7 s under -race on a quiet machine
		// before; 1.8 s at load average 32 after, 1:1 1.0 s there).
		var slowest time.Duration
		for i := 0; i < 20; i++ {
			start := time.Now()
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err := other.Incr(cctx, "counter").Err()
			cancel()
			if err != nil {
				t.Fatalf("another client while one does not read: %v", err)
			}
			slowest = max(slowest, time.Since(start))
		}
		t.Logf("slowest INCR of the other client: %v", slowest.Round(time.Millisecond))
		if slowest > 5*time.Second {
			t.Errorf("slowest INCR took %v beside a client that does not read", slowest)
		}
	})
}

// TestTLSMutual: with a client CA, a client without a certificate is
// refused and one with a certificate of that CA is served.
func TestTLSMutual(t *testing.T) {
	x := redistest.NewTLS(t)
	master := redistest.StartServer(t, redistest.ServerOptions{TLS: x})
	cfg := tlsProxyConfig(t, x, true)
	cfg.TLS.ClientCAFile = x.CAFile
	srv := startProxy(t, cfg, newRoutes(master.Addr))
	ctx := context.Background()
	anon := tlsClient(t, srv.Addr().String(), x, false)
	if err := anon.Ping(ctx).Err(); err == nil {
		t.Fatal("a client without a certificate was served")
	}
	// The client sees the server's alert before the server's handshake
	// call returns and counts it (TLS 1.3: the client finishes first).
	failed := func() int64 { return srv.Stats().Listeners[0].TLSFailed }
	for deadline := time.Now().Add(5 * time.Second); failed() < 1 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if n := failed(); n < 1 {
		t.Errorf("TLSFailed = %d after a refused handshake, want >= 1", n)
	}
	withCert := tlsClient(t, srv.Addr().String(), x, true)
	if err := withCert.Ping(ctx).Err(); err != nil {
		t.Fatalf("a client with a certificate: %v", err)
	}
	// A certificate of another CA is refused too.
	other := redistest.NewTLS(t)
	oc := other.ClientConfig()
	oc.RootCAs = x.Pool
	stranger := proxyClient(t, srv.Addr().String(), &redis.Options{TLSConfig: oc, Protocol: 2, DisableIdentity: true})
	if err := stranger.Ping(ctx).Err(); err == nil {
		t.Fatal("a client with a certificate of another CA was served")
	}
}

// peerName dials the proxy and returns the certificate's common name,
// checking the connection works.
func peerName(t *testing.T, addr string, x *redistest.TLS) (string, *tls.Conn) {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", addr, &tls.Config{RootCAs: x.Pool, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ping(t, c)
	return c.ConnectionState().PeerCertificates[0].Subject.CommonName, c
}

func ping(t *testing.T, c net.Conn) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	n, err := c.Read(buf)
	if err != nil || string(buf[:n]) != "+PONG\r\n" {
		t.Fatalf("PING: %q, %v", buf[:n], err)
	}
}

// TestTLSReload: a new certificate is served after ReloadTLS (SIGHUP) and
// after the files change; connections made before go on.
func TestTLSReload(t *testing.T) {
	x := redistest.NewTLS(t)
	master := redistest.StartServer(t, redistest.ServerOptions{TLS: x})
	srv := startProxy(t, tlsProxyConfig(t, x, true), newRoutes(master.Addr))
	addr := srv.Addr().String()
	name, old := peerName(t, addr, x)
	if name != "proxy-1" {
		t.Fatalf("first certificate: %q", name)
	}
	x.Issue(t, "proxy", "proxy-2")
	if err := srv.ReloadTLS(); err != nil {
		t.Fatal(err)
	}
	if name, _ := peerName(t, addr, x); name != "proxy-2" {
		t.Fatalf("after ReloadTLS: %q, want proxy-2", name)
	}
	ping(t, old)
	x.Issue(t, "proxy", "proxy-3")
	testutil.Eventually(t, 20*time.Second, "the changed files are served", func() bool {
		name, _ := peerName(t, addr, x)
		return name == "proxy-3"
	})
	ping(t, old)
	// A broken file keeps the certificate in use.
	if err := writeFile(srv.cfg.TLS.CertFile, "not a certificate"); err != nil {
		t.Fatal(err)
	}
	if err := srv.ReloadTLS(); err == nil {
		t.Fatal("ReloadTLS of a broken file: no error")
	}
	if name, _ := peerName(t, addr, x); name != "proxy-3" {
		t.Fatalf("after a failed reload: %q, want proxy-3", name)
	}
	ping(t, old)
}

func TestTLSConfigErrors(t *testing.T) {
	cfg := testConfig()
	cfg.TLS = TLSConfig{Enabled: true, MinVersion: "1.1"}
	err := cfg.Validate()
	for _, key := range []string{"proxy.tls.cert_file", "proxy.tls.key_file", "proxy.tls.min_version"} {
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("error %v does not name %s", err, key)
		}
	}
	cfg.TLS = TLSConfig{Enabled: true, CertFile: "/nonexistent.crt", KeyFile: "/nonexistent.key"}
	if _, err := New(cfg, newRoutes(""), nil); err == nil || !strings.Contains(err.Error(), "proxy.tls") {
		t.Errorf("missing files: %v", err)
	}
}

func writeFile(path, s string) error { return os.WriteFile(path, []byte(s), 0o600) }

// TestTLSFailover: a TLS client's session moves to the new TLS master
// when the route changes, without reconnecting.
func TestTLSFailover(t *testing.T) {
	x := redistest.NewTLS(t)
	a := redistest.StartServer(t, redistest.ServerOptions{TLS: x})
	b := redistest.StartServer(t, redistest.ServerOptions{TLS: x, ReplicaOf: a.Addr})
	ctx := context.Background()
	multiplexModes(t, func(t *testing.T, multiplex bool) {
		master, next := a, b
		if role(a.Client()) != "master" {
			master, next = b, a
		}
		routes := newRoutes(master.Addr)
		srv := startProxy(t, tlsProxyConfig(t, x, multiplex), routes)
		c, err := tls.Dial("tcp", srv.Addr().String(), &tls.Config{RootCAs: x.Pool, ServerName: "127.0.0.1"})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		raw := &rawClient{t: t, c: c, rd: bufio.NewReader(c)}
		raw.do("+OK\r\n", "SET", "before", "1")
		if v, err := master.Client().Get(ctx, "before").Result(); err != nil || v != "1" {
			t.Fatalf("the master has %q, %v", v, err)
		}
		testutil.Eventually(t, 10*time.Second, "the replica has the key (replication over TLS)", func() bool {
			v, err := next.Client().Get(ctx, "before").Result()
			return err == nil && v == "1"
		})
		promote(t, next, master)
		routes.Set(next.Addr)
		raw.do("+OK\r\n", "SET", "after", "2")
		if v, err := next.Client().Get(ctx, "after").Result(); err != nil || v != "2" {
			t.Fatalf("the new master has %q, %v", v, err)
		}
		raw.do(bulk("1"), "GET", "before")
	})
}

// TestTLSHandover: a hand-over passes the TLS listener but not TLS client
// connections (their keys live in this process): a client gets its reply,
// then EOF, and a new connection is served by the next process with TLS.
func TestTLSHandover(t *testing.T) {
	x := redistest.NewTLS(t)
	master := redistest.StartServer(t, redistest.ServerOptions{TLS: x})
	routes := newRoutes(master.Addr)
	cfg := tlsProxyConfig(t, x, true)
	srv, stop := runProxy(t, cfg, routes)
	addr := srv.Addr().String()
	_, old := peerName(t, addr, x)
	next, stopNext := handOverTo(t, srv, stop, cfg, routes)
	defer func() {
		if err := stopNext(); err != nil {
			t.Error(err)
		}
	}()
	_ = old.SetDeadline(time.Now().Add(5 * time.Second))
	if n, err := old.Read(make([]byte, 16)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the old TLS connection is still open after the hand-over: %d bytes, %v", n, err)
	}
	if name, _ := peerName(t, next.Addr().String(), x); name != "proxy-1" {
		t.Fatalf("the next process serves %q", name)
	}
	if got := next.listeners()[0].cur.Load(); got != 1 {
		t.Errorf("%d sessions on the next process, want 1 (the new connection)", got)
	}
}
