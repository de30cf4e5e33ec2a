package proxy

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redhaven/redhaven/e2e/redistest"
	"github.com/redhaven/redhaven/e2e/testutil"
)

// TestRuntimePasswordNoInheritedAuth: after CONFIG SET requirepass at
// runtime, a new client that never sent AUTH gets NOAUTH through the
// proxy, as on a direct connection, although a shared backend
// connection opened before the password (and so authenticated) exists.
// The password is set through the proxy (takes effect at once) and on a
// direct connection (found by the proxy's periodic check).
func TestRuntimePasswordNoInheritedAuth(t *testing.T) {
	for _, via := range []string{"proxy", "direct"} {
		t.Run(via, func(t *testing.T) {
			rs := redistest.StartServer(t, redistest.ServerOptions{})
			srv := startProxy(t, testConfig(), newRoutes(rs.Addr))
			addr := srv.Addr().String()

			// clients that used the proxy before the password was set
			// (they hold the shared connection open)
			before := dialRaw(t, addr)
			before.do("+OK\r\n", "SET", "k", "v")
			before3 := dialRaw(t, addr)
			before3.send("HELLO", "3")
			if got := before3.reply(); !strings.HasPrefix(got, "%") {
				t.Fatalf("HELLO 3: %q", got)
			}
			before3.do(bulk("v"), "GET", "k")

			if via == "proxy" {
				setter := dialRaw(t, addr)
				setter.do("+OK\r\n", "CONFIG", "SET", "requirepass", "newpw")
				for _, proto := range []string{"2", "3"} {
					c := dialRaw(t, addr)
					if proto == "3" {
						c.send("HELLO", "3")
						if got := c.reply(); !strings.HasPrefix(got, "-NOAUTH") {
							t.Fatalf("new client HELLO 3 after CONFIG SET requirepass through the proxy: %q, want -NOAUTH", got)
						}
					}
					c.send("GET", "k")
					if got := c.reply(); !strings.HasPrefix(got, "-NOAUTH") {
						t.Fatalf("new client (RESP%s) GET after CONFIG SET requirepass through the proxy: %q, want -NOAUTH", proto, got)
					}
					c.do("+OK\r\n", "AUTH", "newpw")
					c.do(bulk("v"), "GET", "k")
				}
			} else {
				d := dialRaw(t, rs.Addr)
				d.do("+OK\r\n", "CONFIG", "SET", "requirepass", "newpw")
				var last string
				testutil.Eventually(t, 10*time.Second, "a new client gets NOAUTH after a password set on a direct connection", func() bool {
					c := dialRaw(t, addr)
					c.send("GET", "k")
					last = c.reply()
					_ = c.c.Close()
					return strings.HasPrefix(last, "-NOAUTH")
				})
				c := dialRaw(t, addr)
				c.do("+OK\r\n", "AUTH", "newpw")
				c.do(bulk("v"), "GET", "k")
			}
		})
	}
}

// TestResp3AuthAfterRuntimePassword: a RESP3 client against a Redis with
// a password authenticates in every order a client may use (HELLO 3
// then AUTH, HELLO 3 AUTH user pass, AUTH then HELLO 3, and HELLO 3 sent
// before the password was set, then AUTH), then its commands work, also
// after its backend connection is replaced (replay: AUTH before HELLO).
func TestResp3AuthAfterRuntimePassword(t *testing.T) {
	rs := redistest.StartServer(t, redistest.ServerOptions{})
	routes := newRoutes(rs.Addr)
	srv := startProxy(t, testConfig(), routes)
	addr := srv.Addr().String()

	// a RESP3 session from before the password
	early := dialRaw(t, addr)
	early.send("HELLO", "3")
	if got := early.reply(); !strings.HasPrefix(got, "%") {
		t.Fatalf("HELLO 3: %q", got)
	}
	early.do("+OK\r\n", "SET", "k", "v")
	// one that authenticates only after a failover to a server with a
	// password: its replayed HELLO 3 is refused, its AUTH brings it back
	late := dialRaw(t, addr)
	late.send("HELLO", "3")
	if got := late.reply(); !strings.HasPrefix(got, "%") {
		t.Fatalf("HELLO 3: %q", got)
	}
	late.do(bulk("v"), "GET", "k")

	setter := dialRaw(t, addr)
	setter.do("+OK\r\n", "CONFIG", "SET", "requirepass", "pw")

	early.do("+OK\r\n", "AUTH", "pw")
	early.do(bulk("v"), "GET", "k")
	early.send("HELLO")
	if got := early.reply(); !strings.Contains(got, "proto\r\n:3\r\n") {
		t.Fatalf("early session: protocol after AUTH: %q", got)
	}

	// HELLO 3 then AUTH: as on a direct connection, HELLO fails and the
	// connection stays RESP2
	a := dialRaw(t, addr)
	a.send("HELLO", "3")
	if got := a.reply(); !strings.HasPrefix(got, "-NOAUTH") {
		t.Fatalf("HELLO 3 before AUTH: %q, want -NOAUTH", got)
	}
	a.do("+OK\r\n", "AUTH", "pw")
	a.do(bulk("v"), "GET", "k")

	// HELLO 3 AUTH user pass
	b := dialRaw(t, addr)
	b.send("HELLO", "3", "AUTH", "default", "pw")
	if got := b.reply(); !strings.HasPrefix(got, "%") {
		t.Fatalf("HELLO 3 AUTH: %q", got)
	}
	b.do(bulk("v"), "GET", "k")

	// AUTH then HELLO 3
	c := dialRaw(t, addr)
	c.do("+OK\r\n", "AUTH", "pw")
	c.send("HELLO", "3")
	if got := c.reply(); !strings.HasPrefix(got, "%") {
		t.Fatalf("HELLO 3 after AUTH: %q", got)
	}
	c.do(bulk("v"), "GET", "k")

	// failover to a server that has the password from the start: every
	// session's backend connection is replaced, and the replay must
	// authenticate before HELLO 3
	rs2 := redistest.StartServer(t, redistest.ServerOptions{Password: "pw"})
	if err := rs2.Client().Set(context.Background(), "k", "v2", 0).Err(); err != nil {
		t.Fatal(err)
	}
	routes.Set(rs2.Addr)
	var got string
	testutil.Eventually(t, 5*time.Second, "a session without AUTH gets NOAUTH after a failover to a server with a password", func() bool {
		late.send("GET", "k")
		got = late.reply()
		return strings.HasPrefix(got, "-NOAUTH")
	})
	late.do("+OK\r\n", "AUTH", "pw")
	late.do(bulk("v2"), "GET", "k")
	late.send("HELLO")
	if got := late.reply(); !strings.Contains(got, "proto\r\n:3\r\n") {
		t.Fatalf("late session: protocol after AUTH: %q", got)
	}
	for i, cl := range []*rawClient{early, a, b, c} {
		var got string
		testutil.Eventually(t, 5*time.Second, "a RESP3 session works after a failover", func() bool {
			cl.send("GET", "k")
			got = cl.reply()
			return got == bulk("v2")
		})
		want := "proto\r\n:3\r\n"
		if cl == a {
			want = "proto\r\n:2\r\n"
		}
		cl.send("HELLO")
		if got := cl.reply(); !strings.Contains(got, want) {
			t.Fatalf("session %d: protocol after the failover: %q, want %q", i, got, want)
		}
	}
}

// TestNoSecretsInDebugLog: a client's AUTH and HELLO AUTH passwords
// appear in no log line, at debug level.
func TestNoSecretsInDebugLog(t *testing.T) {
	rs := redistest.StartServer(t, redistest.ServerOptions{Password: "s3cretpw"})
	var mu sync.Mutex
	var buf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&lockedWriter{mu: &mu, w: &buf}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv, err := New(testConfig(), newRoutes(rs.Addr), logger)
	if err != nil {
		t.Fatal(err)
	}
	stop := runServer(srv)
	addr := srv.Addr().String()

	a := dialRaw(t, addr)
	a.do("+OK\r\n", "AUTH", "s3cretpw")
	a.do("+OK\r\n", "AUTH", "default", "s3cretpw")
	a.do("$-1\r\n", "GET", "k")
	b := dialRaw(t, addr)
	b.send("HELLO", "3", "AUTH", "default", "s3cretpw", "SETNAME", "x")
	if got := b.reply(); !strings.HasPrefix(got, "%") {
		t.Fatalf("HELLO 3 AUTH: %q", got)
	}
	b.do("_\r\n", "GET", "k")
	w := dialRaw(t, addr)
	w.send("AUTH", "wr0ngpw")
	if got := w.reply(); !strings.HasPrefix(got, "-WRONGPASS") {
		t.Fatalf("wrong AUTH: %q", got)
	}
	a.c.Close()
	b.c.Close()
	w.c.Close()
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	out := buf.String()
	if !strings.Contains(out, "level=DEBUG") {
		t.Fatalf("no debug line logged: %q", out)
	}
	for _, secret := range []string{"s3cretpw", "wr0ngpw"} {
		if strings.Contains(out, secret) {
			t.Fatalf("log contains a client's password %q:\n%s", secret, out)
		}
	}
}

// runServer runs srv until stop.
func runServer(srv *Server) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	return sync.OnceValue(func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Second):
			return errors.New("Run did not return within 10s of cancel")
		}
	})
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
