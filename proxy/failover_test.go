package proxy

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/redhaven/redhaven/e2e/redistest"
	"github.com/redhaven/redhaven/e2e/testutil"
)

// pair starts A (master) and B (replica of A, in sync).
func pair(t *testing.T) (a, b *redistest.Server) {
	t.Helper()
	fast := []string{"--repl-diskless-sync-delay", "0"}
	a = redistest.StartServer(t, redistest.ServerOptions{Extra: fast})
	b = redistest.StartServer(t, redistest.ServerOptions{ReplicaOf: a.Addr, Extra: fast})
	testutil.Eventually(t, 15*time.Second, "replica link up", func() bool {
		return infoField(t, b.Client(), "replication", "master_link_status") == "up"
	})
	return a, b
}

func waitSynced(t *testing.T, master, replica *redistest.Server) {
	t.Helper()
	testutil.Eventually(t, 10*time.Second, "replica caught up", func() bool {
		mo := infoField(t, master.Client(), "replication", "master_repl_offset")
		ro := infoField(t, replica.Client(), "replication", "slave_repl_offset")
		return mo != "" && mo == ro
	})
}

func TestIdleSessionMovesWithState(t *testing.T) {
	a, b := pair(t)
	routes := newRoutes(a.Addr)
	srv := startProxy(t, testConfig(), routes)
	ctx := context.Background()

	r := dialRaw(t, srv.Addr().String())
	r.send("HELLO", "3")
	r.reply()
	r.do("+OK\r\n", "SELECT", "3")
	r.do("+OK\r\n", "CLIENT", "SETNAME", "app1")
	r.do("+OK\r\n", "SET", "x", "1")
	sub := dialRaw(t, srv.Addr().String())
	sub.send("SUBSCRIBE", "news")
	sub.expect("*3\r\n" + bulk("subscribe") + bulk("news") + ":1\r\n")
	sub.send("PSUBSCRIBE", "n*")
	sub.expect("*3\r\n" + bulk("psubscribe") + bulk("n*") + ":2\r\n")
	waitSynced(t, a, b)

	promote(t, b, a)
	routes.Set(b.Addr)
	// the idle session moved by itself, with its name
	testutil.Eventually(t, 5*time.Second, "session reconnected to B with its name", func() bool {
		list, _ := b.Client().ClientList(ctx).Result()
		return strings.Contains(list, "name=app1")
	})
	r.do(bulk("app1"), "CLIENT", "GETNAME")
	r.do(bulk("1"), "GET", "x") // db 3, replicated
	r.do(":1\r\n", "HSET", "h", "f", "v")
	r.do("%1\r\n"+bulk("f")+bulk("v"), "HGETALL", "h") // still RESP3
	// the subscriber gets messages published on B
	testutil.Eventually(t, 5*time.Second, "subscriptions re-established on B", func() bool {
		n, _ := b.Client().Publish(ctx, "news", "hello").Result()
		return n == 2 // channel + pattern: same connection counted per subscription
	})
	got := map[string]bool{}
	for len(got) < 2 {
		s, err := sub.replyWithin(5 * time.Second)
		if err != nil {
			t.Fatalf("no message after move: %v", err)
		}
		if strings.Contains(s, "hello") {
			got[strings.SplitN(s, "\r\n", 3)[1]] = true
		}
	}
	sub.do("*2\r\n"+bulk("pong")+bulk(""), "PING")
	st := srv.Stats()
	if st.Listeners[0].TotalSessions != 2 {
		t.Fatalf("clients reconnected: %+v", st.Listeners[0])
	}
}

func TestInFlightCommandLost(t *testing.T) {
	a, b := pair(t)
	routes := newRoutes(a.Addr)
	cfg := testConfig()
	cfg.HoldTimeout = 5 * time.Second
	srv := startProxy(t, cfg, routes)

	r := dialRaw(t, srv.Addr().String())
	r.do("+OK\r\n", "SET", "before", "1")
	r.send("BLPOP", "q", "0")
	testutil.Eventually(t, 5*time.Second, "BLPOP blocked on A", func() bool {
		return infoField(t, a.Client(), "clients", "blocked_clients") == "1"
	})
	waitSynced(t, a, b)
	a.Kill()
	r.expect(ReplyLostMaster)
	// the connection stays open: the next command waits for a master
	r.send("SET", "after", "1")
	testutil.Eventually(t, 5*time.Second, "the command is held, redialing dead A", func() bool {
		for _, be := range srv.Stats().Backends {
			if be.Addr == a.Addr {
				return be.Errors >= 3 // the lost connection + failed dials
			}
		}
		return false
	})
	promote(t, b, nil)
	routes.Set(b.Addr)
	r.expect("+OK\r\n")
	r.do(bulk("1"), "GET", "before")
	if v, _ := b.Client().Get(context.Background(), "after").Result(); v != "1" {
		t.Fatalf("write after failover not on B: %q", v)
	}
	if st := srv.Stats().Listeners[0]; st.TotalSessions != 1 || st.Errors != 1 {
		t.Fatalf("stats: %+v", st)
	}
}

func TestRouteChangeDrainsInFlight(t *testing.T) {
	a, b := pair(t)
	routes := newRoutes(a.Addr)
	cfg := testConfig()
	cfg.HoldTimeout = time.Second
	srv := startProxy(t, cfg, routes)
	r := dialRaw(t, srv.Addr().String())
	r.send("BLPOP", "never", "0")
	testutil.Eventually(t, 5*time.Second, "BLPOP blocked on A", func() bool {
		return infoField(t, a.Client(), "clients", "blocked_clients") == "1"
	})
	// route moves away from a live A: the blocked command gets its bounded
	// time, then the lost-outcome error; the session goes to B.
	promote(t, b, nil)
	start := time.Now()
	routes.Set(b.Addr)
	r.expect(ReplyLostMaster)
	if d := time.Since(start); d < 500*time.Millisecond {
		t.Fatalf("in-flight command failed after %v, before its drain time", d)
	}
	r.do("+OK\r\n", "SET", "onb", "1")
	if v, _ := b.Client().Get(context.Background(), "onb").Result(); v != "1" {
		t.Fatalf("not on B")
	}
	if v, _ := a.Client().Exists(context.Background(), "onb").Result(); v != 0 {
		t.Fatalf("write went to old master")
	}
}

func TestReadonlyAnswerIsRetried(t *testing.T) {
	a, b := pair(t)
	routes := newRoutes(a.Addr)
	srv := startProxy(t, testConfig(), routes)
	ctx := context.Background()
	r := dialRaw(t, srv.Addr().String())
	r.do("+OK\r\n", "SET", "k", "0")
	waitSynced(t, a, b)
	promote(t, b, a) // A is a replica now, the route still says A
	// a pipeline: the writes get -READONLY from A and are sent again to B
	r.write(string(appendCommandStrings(nil, "SET", "k", "1")) + string(appendCommandStrings(nil, "GET", "k")) + string(appendCommandStrings(nil, "INCR", "n")))
	testutil.Eventually(t, 5*time.Second, "A answered READONLY", func() bool {
		return strings.Contains(infoField(t, a.Client(), "errorstats", "errorstat_READONLY"), "count=")
	})
	routes.Set(b.Addr)
	r.expect("+OK\r\n")
	r.expect(bulk("1"))
	r.expect(":1\r\n")
	if st := srv.Stats().Listeners[0]; st.Resent != 3 {
		t.Fatalf("Resent = %d, want 3", st.Resent)
	}
	if v, _ := b.Client().Get(ctx, "k").Result(); v != "1" {
		t.Fatalf("k on B = %q", v)
	}
	// a transaction answered READONLY is not replayed: errors go back
	promote(t, a, b) // back to A as master, B replica; route still B
	r.write(string(appendCommandStrings(nil, "MULTI")) + string(appendCommandStrings(nil, "SET", "t", "1")) + string(appendCommandStrings(nil, "EXEC")))
	r.expect("+OK\r\n")
	if got := r.reply(); !strings.HasPrefix(got, "-READONLY") {
		t.Fatalf("SET in MULTI on demoted master: %q", got)
	}
	if got := r.reply(); !strings.HasPrefix(got, "-EXECABORT") {
		t.Fatalf("EXEC on demoted master: %q", got)
	}
	// the session holds new commands until the route follows
	r.send("SET", "t", "2")
	routes.Set(a.Addr)
	r.expect("+OK\r\n")
	if v, _ := a.Client().Get(ctx, "t").Result(); v != "2" {
		t.Fatalf("t on A = %q", v)
	}
}

// A pipeline of plain commands shares one FIFO entry; a -READONLY in its
// middle must still answer the commands before it as Redis did and resend
// exactly the failed command and the ones after it.
func TestReadonlyMidPipelineIsRetried(t *testing.T) {
	a, b := pair(t)
	routes := newRoutes(a.Addr)
	srv := startProxy(t, testConfig(), routes)
	ctx := context.Background()
	r := dialRaw(t, srv.Addr().String())
	r.do("+OK\r\n", "SET", "k", "0")
	waitSynced(t, a, b)
	promote(t, b, a) // A is a replica now, the route still says A
	var p []byte
	p = appendCommandStrings(p, "GET", "k")      // answered by A (a replica serves reads)
	p = appendCommandStrings(p, "GET", "k")      //
	p = appendCommandStrings(p, "SET", "k", "1") // -READONLY: resent from here
	p = appendCommandStrings(p, "GET", "k")
	p = appendCommandStrings(p, "INCR", "n")
	r.write(string(p))
	r.expect(bulk("0"))
	r.expect(bulk("0"))
	testutil.Eventually(t, 5*time.Second, "A answered READONLY", func() bool {
		return strings.Contains(infoField(t, a.Client(), "errorstats", "errorstat_READONLY"), "count=")
	})
	routes.Set(b.Addr)
	r.expect("+OK\r\n")
	r.expect(bulk("1"))
	r.expect(":1\r\n")
	if st := srv.Stats().Listeners[0]; st.Resent != 3 {
		t.Fatalf("Resent = %d, want 3", st.Resent)
	}
	if v, _ := b.Client().Get(ctx, "n").Result(); v != "1" {
		t.Fatalf("n on B = %q", v)
	}
	// the session goes on with runs on B
	r.write(string(appendCommandStrings(appendCommandStrings(nil, "INCR", "n"), "INCR", "n")))
	r.expect(":2\r\n")
	r.expect(":3\r\n")
}

func TestHoldWithoutMaster(t *testing.T) {
	rs := redistest.StartServer(t, redistest.ServerOptions{})
	routes := newRoutes("")
	cfg := testConfig()
	cfg.HoldTimeout = time.Second
	srv := startProxy(t, cfg, routes)
	r := dialRaw(t, srv.Addr().String())
	start := time.Now()
	r.send("SET", "h", "1")
	r.expect("-MASTERDOWN redhaven: no master available (held 1s)\r\n")
	if d := time.Since(start); d < 900*time.Millisecond || d > 5*time.Second {
		t.Fatalf("hold lasted %v, want about 1s", d)
	}
	// a pipeline held together fails together (not 1s each)
	start = time.Now()
	r.write(string(appendCommandStrings(nil, "SET", "h", "1")) + string(appendCommandStrings(nil, "SET", "h", "2")) + string(appendCommandStrings(nil, "PING")))
	for i := 0; i < 3; i++ {
		if got := r.reply(); !strings.HasPrefix(got, "-MASTERDOWN") {
			t.Fatalf("reply %d: %q", i, got)
		}
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("pipelined hold lasted %v", d)
	}
	// a master appearing during the hold lets the command through
	r.send("SET", "h", "3")
	time.Sleep(300 * time.Millisecond) // not a synchronisation: lets the route appear mid-hold (passes either way)
	routes.Set(rs.Addr)
	r.expect("+OK\r\n")
	if v, _ := rs.Client().Get(context.Background(), "h").Result(); v != "3" {
		t.Fatalf("h = %q", v)
	}
}

func TestTransactionAcrossMove(t *testing.T) {
	a, b := pair(t)
	routes := newRoutes(a.Addr)
	srv := startProxy(t, testConfig(), routes)
	r := dialRaw(t, srv.Addr().String())
	r.do("+OK\r\n", "MULTI")
	r.do("+QUEUED\r\n", "SET", "m", "1")
	w := dialRaw(t, srv.Addr().String())
	w.do("+OK\r\n", "WATCH", "wk")
	waitSynced(t, a, b)
	promote(t, b, a)
	routes.Set(b.Addr)
	testutil.Eventually(t, 5*time.Second, "both sessions moved to B", func() bool {
		st := srv.Stats()
		for _, be := range st.Backends {
			if be.Addr == b.Addr {
				return be.Sessions == 2
			}
		}
		return false
	})
	r.do("+QUEUED\r\n", "SET", "m2", "1")
	r.do(ReplyExecAbortMoved, "EXEC")
	r.do(bulk("ok"), "PING", "ok")
	// WATCH before the move: the transaction after it fails like a conflict
	w.do("+OK\r\n", "MULTI")
	w.do("+QUEUED\r\n", "SET", "wk", "1")
	w.do("*-1\r\n", "EXEC")
	w.do("+OK\r\n", "MULTI")
	w.do("+QUEUED\r\n", "SET", "wk", "2")
	w.do("*1\r\n+OK\r\n", "EXEC")
	if v, _ := b.Client().Exists(context.Background(), "m", "m2").Result(); v != 0 {
		t.Fatalf("aborted transaction ran on B")
	}
}

func TestSubscriberSurvivesMasterKill(t *testing.T) {
	a, b := pair(t)
	routes := newRoutes(a.Addr)
	srv := startProxy(t, testConfig(), routes)
	ctx := context.Background()
	for _, proto := range []string{"2", "3"} {
		sub := dialRaw(t, srv.Addr().String())
		sub.send("HELLO", proto)
		sub.reply()
		sub.send("SUBSCRIBE", "alerts"+proto)
		sub.reply()
		t.Cleanup(func() { sub.c.Close() })
	}
	a.Kill()
	testutil.Eventually(t, 5*time.Second, "subscribers retry the dead master", func() bool {
		for _, be := range srv.Stats().Backends {
			if be.Addr == a.Addr {
				return be.Errors >= 4
			}
		}
		return false
	})
	promote(t, b, nil)
	routes.Set(b.Addr)
	for _, proto := range []string{"2", "3"} {
		testutil.Eventually(t, 5*time.Second, "RESP"+proto+" subscription re-established", func() bool {
			n, _ := b.Client().Publish(ctx, "alerts"+proto, "fire").Result()
			return n == 1
		})
	}
	if st := srv.Stats(); st.Listeners[0].TotalSessions != 2 || st.Listeners[0].Errors != 0 {
		t.Fatalf("stats: %+v", st.Listeners[0])
	}
}

// TestNoSecondLossOnDyingMaster: after its connection to the master broke,
// the proxy does not send commands on a new connection to that address
// until the server answers a PING. A master being killed still completes
// TCP handshakes for a moment (stood in for here by a listener that
// accepts and resets without reading); commands written there would be
// lost a second time.
func TestNoSecondLossOnDyingMaster(t *testing.T) {
	a := redistest.StartServer(t, redistest.ServerOptions{})
	b := redistest.StartServer(t, redistest.ServerOptions{})
	routes := newRoutes(a.Addr)
	srv := startProxy(t, testConfig(), routes)
	c := dialRaw(t, srv.Addr().String())
	c.do("+OK\r\n", "SET", "k", "before")

	a.Kill()
	ln, err := net.Listen("tcp", a.Addr)
	if err != nil {
		t.Fatalf("listen on the dead master's address: %v", err)
	}
	defer ln.Close()
	accepted := make(chan struct{}, 100)
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			select {
			case accepted <- struct{}{}:
			default:
			}
			go func() {
				time.Sleep(50 * time.Millisecond)
				_ = conn.(*net.TCPConn).SetLinger(0)
				_ = conn.Close()
			}()
		}
	}()

	// The command below must not be the one in flight at the loss: wait
	// until the proxy saw its connection to A end.
	testutil.Eventually(t, 5*time.Second, "proxy noticed the lost connection", func() bool {
		for _, b := range srv.Stats().Backends {
			if b.Addr == a.Addr && b.Errors > 0 {
				return true
			}
		}
		return false
	})
	c.send("SET", "k", "after")
	select {
	case <-accepted:
	case <-time.After(5 * time.Second):
		t.Fatal("the proxy did not try the old address again")
	}
	time.Sleep(300 * time.Millisecond) // several redials meet the dying server
	routes.Set(b.Addr)
	c.expect("+OK\r\n")
	if got, err := b.Client().Get(context.Background(), "k").Result(); err != nil || got != "after" {
		t.Fatalf("GET k on the new master = %q, %v; want after", got, err)
	}
}
