package proxy

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redhaven/redhaven/e2e/redistest"
	"github.com/redhaven/redhaven/e2e/testutil"
	"github.com/redis/go-redis/v9"
)

// TestAuthTimeout: with proxy.password, a client that does not
// authenticate within proxy.auth_timeout is closed; one that did stays.
func TestAuthTimeout(t *testing.T) {
	rs := redistest.StartServer(t, redistest.ServerOptions{})
	cfg := testConfig()
	cfg.Password = "proxypw"
	cfg.AuthTimeout = 500 * time.Millisecond
	srv := startProxy(t, cfg, newRoutes(rs.Addr))
	authed := dialRaw(t, srv.Addr().String())
	authed.do("+OK\r\n", "AUTH", "proxypw")
	silent := dialRaw(t, srv.Addr().String())
	talker := dialRaw(t, srv.Addr().String())
	talker.do(ReplyNoAuth, "PING") // talking is not authenticating
	start := time.Now()
	for _, c := range []*rawClient{silent, talker} {
		if got := c.closedAfter(); got != ReplyAuthTimeout {
			t.Errorf("unauthenticated client got %q before the close, want %q", got, ReplyAuthTimeout)
		}
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("closed after %v, before proxy.auth_timeout", d)
	}
	authed.do("+PONG\r\n", "PING")
	if n := srv.Stats().ClientsClosed["auth_timeout"]; n != 2 {
		t.Errorf("clients closed for auth_timeout = %d, want 2", n)
	}
}

// TestIdleTimeout: proxy.client_idle_timeout closes a client that sent
// nothing for that long, as Redis's timeout: not a client waiting for a
// reply (BLPOP), nor a subscriber.
func TestIdleTimeout(t *testing.T) {
	rs := redistest.StartServer(t, redistest.ServerOptions{})
	cfg := testConfig()
	cfg.ClientIdleTimeout = 500 * time.Millisecond
	srv := startProxy(t, cfg, newRoutes(rs.Addr))
	idle := dialRaw(t, srv.Addr().String())
	idle.do("+PONG\r\n", "PING")
	blocked := dialRaw(t, srv.Addr().String())
	blocked.send("BLPOP", "idle:list", "2")
	sub := dialRaw(t, srv.Addr().String())
	sub.send("SUBSCRIBE", "idle:ch")
	sub.expect("*3\r\n" + bulk("subscribe") + bulk("idle:ch") + ":1\r\n")
	busy := dialRaw(t, srv.Addr().String())
	stop := time.Now().Add(1500 * time.Millisecond)
	for time.Now().Before(stop) {
		busy.do("+PONG\r\n", "PING")
		time.Sleep(100 * time.Millisecond) // a client that talks now and then
	}
	busy.do("+PONG\r\n", "PING")
	if got := idle.closedAfter(); got != "" {
		t.Errorf("idle client got %q before the close, want nothing (as Redis)", got)
	}
	blocked.expect("*-1\r\n") // BLPOP timed out after 2s, not cut off
	blocked.do("+PONG\r\n", "PING")
	if n, err := rs.Client().Publish(context.Background(), "idle:ch", "m").Result(); err != nil || n != 1 {
		t.Fatalf("publish: %d, %v", n, err)
	}
	sub.expect("*3\r\n" + bulk("message") + bulk("idle:ch") + bulk("m"))
	if n := srv.Stats().ClientsClosed["idle_timeout"]; n != 1 {
		t.Errorf("clients closed for idle_timeout = %d, want 1", n)
	}
}

// TestMaxClientsPerIP: proxy.max_clients_per_ip refuses an address more
// connections, with an error; a closed one frees its place.
func TestMaxClientsPerIP(t *testing.T) {
	rs := redistest.StartServer(t, redistest.ServerOptions{})
	cfg := testConfig()
	cfg.MaxClientsPerIP = 2
	srv := startProxy(t, cfg, newRoutes(rs.Addr))
	a := dialRaw(t, srv.Addr().String())
	a.do("+PONG\r\n", "PING")
	b := dialRaw(t, srv.Addr().String())
	b.do("+PONG\r\n", "PING")
	c := dialRaw(t, srv.Addr().String())
	if got := c.closedAfter(); got != ReplyMaxClientsPerIP {
		t.Errorf("third client got %q, want %q", got, ReplyMaxClientsPerIP)
	}
	a.c.Close()
	testutil.Eventually(t, 5*time.Second, "a's place freed", func() bool { return sessionsNow(srv) == 1 })
	d := dialRaw(t, srv.Addr().String())
	d.do("+PONG\r\n", "PING")
	st := srv.Stats()
	if n := st.ClientsClosed["max_clients_per_ip"]; n != 1 {
		t.Errorf("refused for max_clients_per_ip = %d, want 1", n)
	}
	if st.Listeners[0].Refused != 1 {
		t.Errorf("listener refused = %d, want 1", st.Listeners[0].Refused)
	}
}

// TestHTTPOnRESPPort: an HTTP request sent to the proxy port (a browser
// told to POST there) is answered and closed by the proxy; it never
// reaches Redis, whose guard would close the shared connection under
// another client's in-flight commands.
func TestHTTPOnRESPPort(t *testing.T) {
	rs := redistest.StartServer(t, redistest.ServerOptions{})
	srv := startProxy(t, testConfig(), newRoutes(rs.Addr))
	ctx := context.Background()
	cli := proxyClient(t, srv.Addr().String(), &redis.Options{PoolSize: 1})

	var wg sync.WaitGroup
	done := make(chan struct{})
	var incrs int64
	var incrErr error
	wg.Add(1)
	go func() { // a client with commands in flight all the time
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			default:
			}
			p := cli.Pipeline()
			for i := 0; i < 50; i++ {
				p.Incr(ctx, "http:counter")
			}
			if _, err := p.Exec(ctx); err != nil {
				incrErr = err
				return
			}
			incrs += 50
		}
	}()
	for _, req := range []string{
		"POST / HTTP/1.1\r\nHost: localhost:6380\r\nContent-Type: text/plain\r\nContent-Length: 9\r\n\r\nFLUSHALL\n",
		"GET /favicon.ico HTTP/1.1\r\nHost: localhost:6380\r\n\r\n",
		"Host: localhost\r\n",
		"*2\r\n$4\r\nPOST\r\n$1\r\n/\r\n", // what Redis's guard checks, in RESP
	} {
		for i := 0; i < 5; i++ {
			c := dialRaw(t, srv.Addr().String())
			c.write(req)
			if got := c.closedAfter(); got != ReplyHTTP {
				t.Fatalf("%q: got %q before the close, want %q", strings.SplitN(req, "\r\n", 2)[0], got, ReplyHTTP)
			}
		}
	}
	close(done)
	wg.Wait()
	if incrErr != nil {
		t.Fatalf("the other client's INCR failed: %v", incrErr)
	}
	if got, _ := rs.Client().Get(ctx, "http:counter").Int64(); got != incrs {
		t.Errorf("counter = %d, want %d (every INCR once)", got, incrs)
	}
	if n := srv.Stats().ClientsClosed["http"]; n != 20 {
		t.Errorf("clients closed for http = %d, want 20", n)
	}
	// an inline GET is still a Redis command
	c := dialRaw(t, srv.Addr().String())
	c.write("GET http:counter\r\n")
	if got := c.reply(); !strings.HasPrefix(got, "$") {
		t.Errorf("inline GET: %q", got)
	}
}

// TestAuthFailuresPassThrough: without proxy.password, clients AUTH to
// Redis through the proxy; Redis's WRONGPASS counts as a wrong proxy
// password does (per listener, logged, closed after maxAuthFailures in a
// row), for AUTH and HELLO AUTH; a success resets the count.
func TestAuthFailuresPassThrough(t *testing.T) {
	rs := redistest.StartServer(t, redistest.ServerOptions{Password: "redispw"})
	srv := startProxy(t, testConfig(), newRoutes(rs.Addr))
	c := dialRaw(t, srv.Addr().String())
	wrong := func(args ...string) {
		t.Helper()
		c.send(args...)
		if got := c.reply(); !strings.HasPrefix(got, "-WRONGPASS") {
			t.Fatalf("%v: %q, want Redis's -WRONGPASS", args, got)
		}
	}
	for i := 0; i < maxAuthFailures; i++ {
		wrong("AUTH", "nope")
	}
	c.do("+OK\r\n", "AUTH", "redispw") // a success resets the count
	for i := 0; i < maxAuthFailures-1; i++ {
		wrong("AUTH", "nope")
	}
	wrong("HELLO", "3", "AUTH", "default", "nope")
	c.send("AUTH", "nope")
	got := c.closedAfter()
	if !strings.HasPrefix(got, "-WRONGPASS") || !strings.HasSuffix(got, ReplyAuthFailures) {
		t.Errorf("after %d failures: %q, want Redis's -WRONGPASS then %q", maxAuthFailures+1, got, ReplyAuthFailures)
	}
	if n := srv.Stats().Listeners[0].AuthFailures; n != 2*maxAuthFailures+1 {
		t.Errorf("AuthFailures = %d, want %d", n, 2*maxAuthFailures+1)
	}
	if n := srv.Stats().ClientsClosed["auth_failures"]; n != 1 {
		t.Errorf("clients closed for auth_failures = %d, want 1", n)
	}
	ok := dialRaw(t, srv.Addr().String()) // the others are untouched
	ok.do("+OK\r\n", "AUTH", "redispw")
	ok.do("+PONG\r\n", "PING")
}

// TestAuthFailures: wrong proxy passwords are counted per listener; more
// than maxAuthFailures in a row close the connection; before AUTH a
// client may not pipeline more than unauthPipeline commands.
func TestAuthFailures(t *testing.T) {
	rs := redistest.StartServer(t, redistest.ServerOptions{})
	cfg := testConfig()
	cfg.Password = "proxypw"
	srv := startProxy(t, cfg, newRoutes(rs.Addr))

	t.Run("in-a-row", func(t *testing.T) {
		c := dialRaw(t, srv.Addr().String())
		for i := 0; i < maxAuthFailures; i++ {
			c.do(ReplyWrongPass, "AUTH", "nope")
		}
		c.do("+OK\r\n", "AUTH", "proxypw") // a success resets the count
		for i := 0; i < maxAuthFailures; i++ {
			c.do(ReplyWrongPass, "AUTH", "nope")
		}
		c.send("AUTH", "nope")
		if got := c.closedAfter(); got != ReplyWrongPass+ReplyAuthFailures {
			t.Errorf("after %d failures: %q, want %q", maxAuthFailures+1, got, ReplyWrongPass+ReplyAuthFailures)
		}
		if n := srv.Stats().Listeners[0].AuthFailures; n != 2*maxAuthFailures+1 {
			t.Errorf("AuthFailures = %d, want %d", n, 2*maxAuthFailures+1)
		}
		if n := srv.Stats().ClientsClosed["auth_failures"]; n != 1 {
			t.Errorf("clients closed for auth_failures = %d, want 1", n)
		}
	})
	t.Run("pipeline-before-auth", func(t *testing.T) {
		var batch []byte
		for i := 0; i < unauthPipeline; i++ {
			batch = appendCommandStrings(batch, "AUTH", "nope")
		}
		ok := dialRaw(t, srv.Addr().String())
		ok.write(string(batch))
		for i := 0; i < unauthPipeline; i++ {
			ok.expect(ReplyWrongPass)
		}
		ok.do("+OK\r\n", "AUTH", "proxypw")
		big := dialRaw(t, srv.Addr().String())
		big.write(string(appendCommandStrings(batch, "AUTH", "nope")))
		want := strings.Repeat(ReplyWrongPass, unauthPipeline) + ReplyUnauthPipeline
		var got string
		for i := 0; i < unauthPipeline; i++ {
			got += big.reply()
		}
		if got += big.closedAfter(); got != want {
			t.Errorf("%d pipelined before AUTH: %q, want %q", unauthPipeline+1, got, want)
		}
	})
}
