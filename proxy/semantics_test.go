package proxy

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redhaven/redhaven/e2e/redistest"
)

// Semantics through the proxy that must be those of a direct connection
// (issue 17). Each test runs in the multiplex mode PROXY_TEST_MULTIPLEX
// says (testConfig), and in RESP2 and RESP3 where the protocol matters.

var protocols = []int{2, 3}

// dialProto connects a raw client and switches it to RESP3 when asked.
func dialProto(t *testing.T, addr string, proto int) *rawClient {
	t.Helper()
	r := dialRaw(t, addr)
	if proto == 3 {
		r.send("HELLO", "3")
		if got := r.reply(); !strings.HasPrefix(got, "%") {
			t.Fatalf("HELLO 3: %q", got)
		}
	}
	return r
}

// pingedPair dials two clients that have a backend place (a PING each).
func pingedPair(t *testing.T, addr string, proto int) (a, b *rawClient) {
	t.Helper()
	a, b = dialProto(t, addr, proto), dialProto(t, addr, proto)
	a.do("+PONG\r\n", "PING")
	b.do("+PONG\r\n", "PING")
	return a, b
}

// clientID asks for the id of the client's backend connection.
func clientID(t *testing.T, r *rawClient) string {
	t.Helper()
	r.send("CLIENT", "ID")
	got := r.reply()
	if !strings.HasPrefix(got, ":") {
		t.Fatalf("CLIENT ID: %q", got)
	}
	return strings.TrimSpace(got[1:])
}

// TestScriptDebugIsolation: SCRIPT DEBUG SYNC from one client does not put
// another client's EVAL into the Lua debugger (it did on a shared
// connection, and replies went to the wrong clients).
func TestScriptDebugIsolation(t *testing.T) {
	rs := redistest.StartServer(t, redistest.ServerOptions{})
	srv := startProxy(t, testConfig(), newRoutes(rs.Addr))
	addr := srv.Addr().String()
	a := dialRaw(t, addr)
	b := dialRaw(t, addr)
	b.do("+PONG\r\n", "PING") // b on the shared connection first
	a.do("+OK\r\n", "SCRIPT", "DEBUG", "SYNC")
	b.send("EVAL", "return 'b'", "0")
	got, err := b.replyWithin(3 * time.Second)
	if err != nil || got != bulk("b") {
		t.Fatalf("another client's EVAL after SCRIPT DEBUG SYNC: %q, %v; want %q", got, err, bulk("b"))
	}
	a.do("+OK\r\n", "SCRIPT", "DEBUG", "NO")
	b.do(bulk("b"), "EVAL", "return 'b'", "0")
}

// TestScriptKillReachesBusyServer: while one client's script runs, SCRIPT
// KILL and FUNCTION KILL from another reach Redis (they queued behind the
// script on a shared connection).
func TestScriptKillReachesBusyServer(t *testing.T) {
	rs := redistest.StartServer(t, redistest.ServerOptions{Extra: []string{"--lua-time-limit", "100"}})
	srv := startProxy(t, testConfig(), newRoutes(rs.Addr))
	addr := srv.Addr().String()
	for _, proto := range protocols {
		t.Run(fmt.Sprintf("RESP%d", proto), func(t *testing.T) {
			busy := dialRaw(t, addr)
			killer := dialProto(t, addr, proto)
			killer.do("+PONG\r\n", "PING")
			busy.send("EVAL", "while true do end", "0")
			time.Sleep(300 * time.Millisecond) // past lua-time-limit: Redis answers BUSY
			killer.send("SCRIPT", "KILL")
			got, err := killer.replyWithin(5 * time.Second)
			if err != nil || got != "+OK\r\n" {
				t.Fatalf("SCRIPT KILL during a busy script: %q, %v", got, err)
			}
			got, err = busy.replyWithin(5 * time.Second)
			if err != nil || !strings.Contains(got, "Script killed by user") {
				t.Fatalf("killed script's reply: %q, %v", got, err)
			}
			busy.do("+PONG\r\n", "PING")

			// the same for a function and FUNCTION KILL
			busy.do(bulk("spin"+fmt.Sprint(proto)), "FUNCTION", "LOAD", "#!lua name=spin"+fmt.Sprint(proto)+"\nredis.register_function('spin"+fmt.Sprint(proto)+"', function() while true do end end)")
			busy.send("FCALL", "spin"+fmt.Sprint(proto), "0")
			time.Sleep(300 * time.Millisecond)
			killer.send("FUNCTION", "KILL")
			got, err = killer.replyWithin(5 * time.Second)
			if err != nil || got != "+OK\r\n" {
				t.Fatalf("FUNCTION KILL during a busy function: %q, %v", got, err)
			}
			if got := busy.reply(); !strings.Contains(got, "killed") {
				t.Fatalf("killed function's reply: %q", got)
			}
		})
	}
}

// TestClientKillReachesClient: CLIENT KILL of a client's backend
// connection ends the client's connection, as it would end a direct one
// (the proxy redialled and replayed it, so the client never saw it).
// The killer and every other client are untouched.
func TestClientKillReachesClient(t *testing.T) {
	rs := redistest.StartServer(t, redistest.ServerOptions{})
	srv := startProxy(t, testConfig(), newRoutes(rs.Addr))
	addr := srv.Addr().String()
	for _, proto := range protocols {
		for _, subscribed := range []bool{false, true} {
			t.Run(fmt.Sprintf("RESP%d/subscribed=%v", proto, subscribed), func(t *testing.T) {
				other := dialProto(t, addr, proto)
				other.do("+OK\r\n", "SET", "other", "1")
				victim := dialProto(t, addr, proto)
				id := clientID(t, victim)
				if subscribed {
					victim.send("SUBSCRIBE", "killme")
					victim.reply()
				}
				killer := dialProto(t, addr, proto)
				killer.do(":1\r\n", "CLIENT", "KILL", "ID", id)
				victim.expectClosed()
				killer.do("+PONG\r\n", "PING")
				other.do(bulk("1"), "GET", "other")
			})
		}
	}
}

// TestClientKillSkipsOthers: CLIENT ID names the client's own backend
// connection, so CLIENT KILL ID of it (and SKIPME) act on that client
// only, never on another client sharing a connection.
func TestClientKillSkipsOthers(t *testing.T) {
	rs := redistest.StartServer(t, redistest.ServerOptions{})
	srv := startProxy(t, testConfig(), newRoutes(rs.Addr))
	addr := srv.Addr().String()
	others := make([]*rawClient, 4)
	for i := range others {
		others[i] = dialRaw(t, addr)
		others[i].do("+OK\r\n", "SET", fmt.Sprint("o", i), "1")
	}
	a := dialRaw(t, addr)
	a.do("+OK\r\n", "SET", "a", "1")
	ida := clientID(t, a)
	b := dialRaw(t, addr)
	idb := clientID(t, b)
	if ida == idb {
		t.Fatalf("two clients got the same CLIENT ID %s", ida)
	}
	// SKIPME yes (the default) spares b's own connection only
	b.do(":0\r\n", "CLIENT", "KILL", "ID", idb)
	b.do(":1\r\n", "CLIENT", "KILL", "ID", ida)
	a.expectClosed()
	for i, o := range others {
		o.do(bulk("1"), "GET", fmt.Sprint("o", i))
	}
}

// TestMonitor: MONITOR streams the server's commands to the client; RESET
// ends it and the connection goes on as new.
func TestMonitor(t *testing.T) {
	rs := redistest.StartServer(t, redistest.ServerOptions{})
	srv := startProxy(t, testConfig(), newRoutes(rs.Addr))
	addr := srv.Addr().String()
	for _, proto := range protocols {
		t.Run(fmt.Sprintf("RESP%d", proto), func(t *testing.T) {
			m := dialProto(t, addr, proto)
			m.do("+OK\r\n", "MONITOR")
			w := dialRaw(t, addr)
			w.do("+OK\r\n", "SET", "monitored", "v")
			found := false
			for i := 0; i < 20 && !found; i++ {
				line := m.reply()
				if !strings.HasPrefix(line, "+") {
					t.Fatalf("monitor line %q", line)
				}
				found = strings.Contains(line, `"SET" "monitored" "v"`)
			}
			if !found {
				t.Fatal("SET never seen by MONITOR")
			}
			m.send("RESET")
			for i := 0; ; i++ {
				line := m.reply()
				if line == "+RESET\r\n" {
					break
				}
				if i > 20 || !monitorLine([]byte(strings.TrimSuffix(line, "\r\n"))) {
					t.Fatalf("after RESET: %q", line)
				}
			}
			m.do("+PONG\r\n", "PING")
			w.do("+OK\r\n", "SET", "monitored", "w")
			m.do(bulk("w"), "GET", "monitored") // no monitor line in between
		})
	}
}

// TestUnblockedAtOnce: -UNBLOCKED from CLIENT UNBLOCK ... ERROR or a
// deleted stream is the client's answer, at once (it was held as if the
// master had been demoted, then answered MASTERDOWN).
func TestUnblockedAtOnce(t *testing.T) {
	rs := redistest.StartServer(t, redistest.ServerOptions{})
	srv := startProxy(t, testConfig(), newRoutes(rs.Addr))
	addr := srv.Addr().String()
	for _, proto := range protocols {
		t.Run(fmt.Sprintf("RESP%d/client-unblock", proto), func(t *testing.T) {
			a := dialProto(t, addr, proto)
			id := clientID(t, a)
			a.send("BLPOP", "unblock-list", "0")
			b := dialProto(t, addr, proto)
			testutilEventually(t, func() bool {
				b.send("CLIENT", "UNBLOCK", id, "ERROR")
				return b.reply() == ":1\r\n"
			})
			got, err := a.replyWithin(time.Second)
			if err != nil || !strings.HasPrefix(got, "-UNBLOCKED") {
				t.Fatalf("BLPOP after CLIENT UNBLOCK ERROR: %q, %v; want -UNBLOCKED at once", got, err)
			}
			a.do("+PONG\r\n", "PING")
		})
		t.Run(fmt.Sprintf("RESP%d/xreadgroup", proto), func(t *testing.T) {
			a := dialProto(t, addr, proto)
			key := fmt.Sprint("stream", proto)
			a.do("+OK\r\n", "XGROUP", "CREATE", key, "g", "$", "MKSTREAM")
			a.send("XREADGROUP", "GROUP", "g", "c", "BLOCK", "0", "STREAMS", key, ">")
			time.Sleep(200 * time.Millisecond)
			b := dialProto(t, addr, proto)
			b.do(":1\r\n", "DEL", key)
			got, err := a.replyWithin(time.Second)
			if err != nil || got != "-UNBLOCKED the stream key no longer exists\r\n" {
				t.Fatalf("XREADGROUP after DEL: %q, %v; want Redis's -UNBLOCKED at once", got, err)
			}
		})
	}
}

// testutilEventually retries cond for up to 5 s.
func testutilEventually(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestReplyOffPubsub: under CLIENT REPLY OFF (and SKIP) SUBSCRIBE gets
// its confirmations and messages as from Redis (the proxy closed the
// client: "reply with no command waiting for it").
func TestReplyOffPubsub(t *testing.T) {
	rs := redistest.StartServer(t, redistest.ServerOptions{})
	srv := startProxy(t, testConfig(), newRoutes(rs.Addr))
	addr := srv.Addr().String()
	pub := rs.Client()
	for _, proto := range protocols {
		for _, mode := range []string{"OFF", "SKIP"} {
			t.Run(fmt.Sprintf("RESP%d/%s", proto, mode), func(t *testing.T) {
				ch := fmt.Sprint("ro-", proto, mode)
				r := dialProto(t, addr, proto)
				r.send("CLIENT", "REPLY", mode)
				r.send("SUBSCRIBE", ch, ch+"x")
				agg := "*3\r\n"
				if proto == 3 {
					agg = ">3\r\n"
				}
				r.expect(agg + bulk("subscribe") + bulk(ch) + ":1\r\n")
				r.expect(agg + bulk("subscribe") + bulk(ch+"x") + ":2\r\n")
				testutilEventually(t, func() bool { return pub.Publish(context.Background(), ch, "hi").Val() == 1 })
				r.expect(agg + bulk("message") + bulk(ch) + bulk("hi"))
			})
		}
	}
}

// TestKeyspaceNotifications: keyspace notifications reach a pattern
// subscriber, also under CLIENT REPLY OFF.
func TestKeyspaceNotifications(t *testing.T) {
	rs := redistest.StartServer(t, redistest.ServerOptions{Extra: []string{"--notify-keyspace-events", "KEA"}})
	srv := startProxy(t, testConfig(), newRoutes(rs.Addr))
	addr := srv.Addr().String()
	w := dialRaw(t, addr)
	for _, proto := range protocols {
		for _, off := range []bool{false, true} {
			t.Run(fmt.Sprintf("RESP%d/reply-off=%v", proto, off), func(t *testing.T) {
				key := fmt.Sprint("ks-", proto, off)
				r := dialProto(t, addr, proto)
				if off {
					r.send("CLIENT", "REPLY", "OFF")
				}
				r.send("PSUBSCRIBE", "__keyspace@0__:"+key)
				agg := "*"
				if proto == 3 {
					agg = ">"
				}
				r.expect(agg + "3\r\n" + bulk("psubscribe") + bulk("__keyspace@0__:"+key) + ":1\r\n")
				w.do("+OK\r\n", "SET", key, "v")
				r.expect(agg + "4\r\n" + bulk("pmessage") + bulk("__keyspace@0__:"+key) + bulk("__keyspace@0__:"+key) + bulk("set"))
			})
		}
	}
}

// TestMultiShutdown: SHUTDOWN inside MULTI gets Redis's own answer (the
// proxy's refusal before), and the transaction aborts as in Redis.
func TestMultiShutdown(t *testing.T) {
	rs := redistest.StartServer(t, redistest.ServerOptions{})
	srv := startProxy(t, testConfig(), newRoutes(rs.Addr))
	r := dialRaw(t, srv.Addr().String())
	r.do("+OK\r\n", "MULTI")
	r.do("+QUEUED\r\n", "SET", "tx", "1")
	r.do("-ERR Command not allowed inside a transaction\r\n", "SHUTDOWN")
	r.do("-EXECABORT Transaction discarded because of previous errors.\r\n", "EXEC")
	r.do("$-1\r\n", "GET", "tx")
	// outside MULTI it is still refused, naming the key that allows it
	r.send("SHUTDOWN")
	if got := r.reply(); !strings.Contains(got, `remove "SHUTDOWN" from proxy.deny_commands`) {
		t.Fatalf("SHUTDOWN: %q", got)
	}
	if err := rs.Client().Ping(context.Background()).Err(); err != nil {
		t.Fatalf("redis: %v", err)
	}
}

// TestDenyCommands: proxy.deny_commands refuses what it lists, with an
// error naming the key; operators can change the list; unknown names are
// configuration errors; refusals are counted by command.
func TestDenyCommands(t *testing.T) {
	rs := redistest.StartServer(t, redistest.ServerOptions{})
	srv := startProxy(t, testConfig(), newRoutes(rs.Addr))
	r := dialRaw(t, srv.Addr().String())
	for _, args := range [][]string{
		{"REPLICAOF", "127.0.0.1", "1"},
		{"slaveof", "no", "one"},
		{"FAILOVER"},
		{"DEBUG", "SLEEP", "0"},
		{"CONFIG", "SET", "maxmemory", "0", "MasterAuth", "x"},
		{"config", "set", "replica-priority", "0"},
	} {
		r.send(args...)
		if got := r.reply(); !strings.HasPrefix(got, "-ERR ") || !strings.Contains(got, "from proxy.deny_commands to allow it") {
			t.Errorf("%v: %q, want a refusal naming proxy.deny_commands", args, got)
		}
	}
	r.do("+OK\r\n", "CONFIG", "SET", "maxmemory-policy", "allkeys-lru")
	if v, _ := rs.Client().ConfigGet(context.Background(), "replica-priority").Result(); v["replica-priority"] != "100" {
		t.Errorf("replica-priority changed: %v", v)
	}
	counts := map[string]int64{}
	for _, c := range srv.Stats().RefusedCommands {
		counts[c.Command] = c.Count
	}
	if counts["replicaof"] != 1 || counts["debug"] != 1 || counts["config set masterauth"] != 1 || counts["config set replica-priority"] != 1 {
		t.Errorf("refused counts %v", counts)
	}

	// an operator's own list: FAILOVER allowed (Redis answers it), FLUSHALL
	// and CLIENT KILL refused
	cfg := testConfig()
	cfg.DenyCommands = []string{"flushall", "CLIENT KILL"}
	srv2 := startProxy(t, cfg, newRoutes(rs.Addr))
	r2 := dialRaw(t, srv2.Addr().String())
	r2.do("-ERR FAILOVER requires connected replicas.\r\n", "FAILOVER")
	r2.send("FLUSHALL")
	if got := r2.reply(); !strings.Contains(got, `remove "FLUSHALL" from proxy.deny_commands`) {
		t.Errorf("FLUSHALL: %q", got)
	}
	r2.send("CLIENT", "KILL", "ID", "1")
	if got := r2.reply(); !strings.Contains(got, `remove "CLIENT KILL" from proxy.deny_commands`) {
		t.Errorf("CLIENT KILL: %q", got)
	}
	r2.do("+OK\r\n", "CLIENT", "SETNAME", "fine")

	cfg.DenyCommands = []string{"FLUSHALL", "NOSUCHCOMMAND", "CLIENT NOSUCH"}
	err := cfg.Validate()
	if err == nil || !strings.Contains(err.Error(), `proxy.deny_commands: unknown command "NOSUCHCOMMAND"`) || !strings.Contains(err.Error(), `"CLIENT NOSUCH"`) {
		t.Errorf("Validate: %v", err)
	}
}

// TestConfigGetHidesPasswords: in proxy.password mode, CONFIG GET through
// the proxy never shows Redis's password (the clients' rights are those of
// redis.username).
func TestConfigGetHidesPasswords(t *testing.T) {
	const redisPass = "redis-s3cret"
	rs := redistest.StartServer(t, redistest.ServerOptions{Password: redisPass})
	cfg := testConfig()
	cfg.Password = "proxy-pw"
	cfg.BackendPassword = redisPass
	srv := startProxy(t, cfg, newRoutes(rs.Addr))
	for _, proto := range protocols {
		t.Run(fmt.Sprintf("RESP%d", proto), func(t *testing.T) {
			r := dialRaw(t, srv.Addr().String())
			r.do("+OK\r\n", "AUTH", "proxy-pw")
			if proto == 3 {
				r.send("HELLO", "3")
				r.reply()
			}
			for _, args := range [][]string{{"CONFIG", "GET", "requirepass"}, {"config", "get", "*"}, {"CONFIG", "GET", "masterauth", "maxmemory"}} {
				r.send(args...)
				got := r.reply()
				if strings.Contains(got, redisPass) {
					t.Errorf("%v shows the password: %q", args, got)
				}
				if args[2] == "*" && (!strings.Contains(got, bulk("requirepass")+"$0\r\n\r\n") || !strings.Contains(got, bulk("maxmemory"))) {
					t.Errorf("%v: %.200q", args, got)
				}
			}
			// inside MULTI its reply would come within EXEC's: refused
			r.do("+OK\r\n", "MULTI")
			r.do(replyConfigGetInMulti, "CONFIG", "GET", "requirepass")
			r.send("EXEC")
			if got := r.reply(); strings.Contains(got, redisPass) || !strings.HasPrefix(got, "-EXECABORT") {
				t.Errorf("EXEC after CONFIG GET in MULTI: %q", got)
			}
		})
	}
}

// TestBusyScriptOthersGetBusy: while one client's script runs, the other
// clients of its shared connection (and new ones) get -BUSY at once, as on
// a direct connection, once the stall probe saw the server answer -BUSY
// (they waited behind the script until it ended; then, until the
// shared connection waited muxStallAfter).
func TestBusyScriptOthersGetBusy(t *testing.T) {
	rs := redistest.StartServer(t, redistest.ServerOptions{Extra: []string{"--lua-time-limit", "100"}})
	srv := startProxy(t, testConfig(), newRoutes(rs.Addr))
	addr := srv.Addr().String()
	for _, proto := range protocols {
		t.Run(fmt.Sprintf("RESP%d", proto), func(t *testing.T) {
			busy, other := pingedPair(t, addr, proto)
			busy.send("EVAL", "while true do end", "0")
			time.Sleep(stallProbeAfter + 200*time.Millisecond) // well before muxStallAfter
			for _, c := range []*rawClient{other, dialProto(t, addr, proto)} {
				c.send("PING")
				got, err := c.replyWithin(2 * time.Second)
				if err != nil || !strings.HasPrefix(got, "-BUSY") {
					t.Fatalf("PING during a busy script: %q, %v; want -BUSY at once", got, err)
				}
			}
			killer := dialRaw(t, addr)
			killer.do("+OK\r\n", "SCRIPT", "KILL")
			if got := busy.reply(); !strings.Contains(got, "Script killed") {
				t.Fatalf("script reply %q", got)
			}
			busy.do("+PONG\r\n", "PING")
			other.do("+PONG\r\n", "PING")
		})
	}
}

// TestSlowScriptIsNoStall: a script that runs 400 ms and ends, below
// busy-reply-threshold, holds a direct connection's PING too: the stall
// probe waits as well, so the shared connection is not taken for stalled
// (no fresh connection for nothing), and the other client's PING is
// answered +PONG once the script ends.
func TestSlowScriptIsNoStall(t *testing.T) {
	rs := redistest.StartServer(t, redistest.ServerOptions{})
	srv := startProxy(t, testConfig(), newRoutes(rs.Addr))
	addr := srv.Addr().String()
	const spin = `local t = redis.call('TIME'); local t0 = t[1] * 1000000 + t[2]
while true do t = redis.call('TIME'); if t[1] * 1000000 + t[2] - t0 > 400000 then break end end
return 1`
	for _, proto := range protocols {
		t.Run(fmt.Sprintf("RESP%d", proto), func(t *testing.T) {
			slow, other := pingedPair(t, addr, proto)
			stalls := srv.muxStalls.Load()
			slow.send("EVAL", spin, "0")
			time.Sleep(150 * time.Millisecond)
			other.send("PING")
			got, err := other.replyWithin(5 * time.Second)
			if err != nil || got != "+PONG\r\n" {
				t.Fatalf("PING during a 400 ms script: %q, %v; want +PONG after it", got, err)
			}
			slow.expect(":1\r\n")
			if n := srv.muxStalls.Load() - stalls; n != 0 {
				t.Fatalf("a 400 ms script (below busy-reply-threshold) stalled %d shared connections; want 0", n)
			}
		})
	}
}

// TestPausedWriteDoesNotHoldReads: a write held by CLIENT PAUSE WRITE
// holds its shared connection; the reads of the other clients on it go
// through (on a fresh shared connection) once the stall probe saw the
// server answer others, as they would on direct connections.
func TestPausedWriteDoesNotHoldReads(t *testing.T) {
	rs := redistest.StartServer(t, redistest.ServerOptions{})
	srv := startProxy(t, testConfig(), newRoutes(rs.Addr))
	addr := srv.Addr().String()
	writer := dialRaw(t, addr)
	reader := dialRaw(t, addr)
	writer.do("+OK\r\n", "SET", "paused", "before")
	reader.do(bulk("before"), "GET", "paused")
	admin := dialRaw(t, addr)
	admin.do("+OK\r\n", "CLIENT", "PAUSE", "20000", "WRITE")
	t.Cleanup(func() { _ = rs.Client().Do(context.Background(), "CLIENT", "UNPAUSE").Err() })
	writer.send("SET", "paused", "after")
	time.Sleep(stallProbeAfter + 200*time.Millisecond) // well before muxStallAfter
	reader.send("GET", "paused")
	got, err := reader.replyWithin(3 * time.Second)
	if err != nil || got != bulk("before") {
		t.Fatalf("GET during a paused write: %q, %v; want %q at once", got, err, bulk("before"))
	}
	admin.do("+OK\r\n", "CLIENT", "UNPAUSE")
	writer.expect("+OK\r\n")
	reader.do(bulk("after"), "GET", "paused")
}

// TestReplayFailureAnswered: when the state replayed on a new backend
// connection is refused (the client's ACL user does not exist on the new
// master), the client's command gets Redis's own error before the
// connection closes (it was closed without a word), whether the command
// was waiting when the refusal came ("waiting": the new master holds the
// replayed AUTH a moment with CLIENT PAUSE) or sent after it ("after":
// it was answered EOF, 1 run in 3 for "waiting" too with RESP3 and
// shared connections).
func TestReplayFailureAnswered(t *testing.T) {
	a := redistest.StartServer(t, redistest.ServerOptions{})
	b := redistest.StartServer(t, redistest.ServerOptions{})
	if err := a.Client().Do(context.Background(), "ACL", "SETUSER", "alice", "on", ">alicepw", "~*", "+@all").Err(); err != nil {
		t.Fatal(err)
	}
	routes := newRoutes(a.Addr)
	srv := startProxy(t, testConfig(), routes)
	for _, proto := range protocols {
		for _, when := range []string{"waiting", "after"} {
			t.Run(fmt.Sprintf("RESP%d/%s", proto, when), func(t *testing.T) {
				routes.Set(a.Addr)
				r := dialRaw(t, srv.Addr().String())
				r.do("+OK\r\n", "AUTH", "alice", "alicepw")
				if proto == 3 {
					r.send("HELLO", "3")
					r.reply()
				}
				r.do("+OK\r\n", "SET", "k", "v")
				wait := 600 * time.Millisecond // the refusal is surely in
				if when == "waiting" {
					if err := b.Client().Do(context.Background(), "CLIENT", "PAUSE", "300", "ALL").Err(); err != nil {
						t.Fatal(err)
					}
					wait = 50 * time.Millisecond
				}
				routes.Set(b.Addr)
				time.Sleep(wait)
				r.send("GET", "k")
				got, err := r.replyWithin(5 * time.Second)
				if err != nil || !strings.HasPrefix(got, "-WRONGPASS") {
					t.Fatalf("command after a failed replay: %q, %v; want Redis's -WRONGPASS", got, err)
				}
				r.expectClosed()
			})
		}
	}
}

// TestShutdownIsNoKill: a master that goes away (SHUTDOWN, SIGKILL) is a
// failover, not a CLIENT KILL: a session on its own connection stays open
// and goes on with the new master.
func TestShutdownIsNoKill(t *testing.T) {
	for _, how := range []string{"shutdown", "sigkill"} {
		t.Run(how, func(t *testing.T) {
			a := redistest.StartServer(t, redistest.ServerOptions{})
			b := redistest.StartServer(t, redistest.ServerOptions{})
			routes := newRoutes(a.Addr)
			srv := startProxy(t, testConfig(), routes)
			r := dialRaw(t, srv.Addr().String())
			r.do("+OK\r\n", "SELECT", "1") // a connection of its own
			r.do("+OK\r\n", "SET", "k", "a")
			if how == "shutdown" {
				_ = a.Client().Do(context.Background(), "SHUTDOWN", "NOSAVE").Err()
			} else {
				a.Kill()
			}
			time.Sleep(300 * time.Millisecond)
			routes.Set(b.Addr)
			r.do("$-1\r\n", "GET", "k") // b's db 1: the session went on there
		})
	}
}

// TestReadsResentAfterSharedLoss: when a shared connection dies under its
// sessions (CLIENT KILL TYPE normal on the server, the master restarted),
// the reads in flight on it are sent again once on a fresh connection
// and answered; writes are never sent twice (outcome unknown). The
// commands are held in flight by CLIENT PAUSE WRITE: the paused SET holds
// the shared connection and every command written behind it (holding
// off: commands sent 20 ms after it would be held back instead and moved
// to a fresh connection at the stall, racing the kill).
func TestReadsResentAfterSharedLoss(t *testing.T) {
	if !testConfig().Multiplex {
		t.Skip("shared connections only (proxy.multiplex)")
	}
	for _, how := range []string{"client-kill", "restart"} {
		t.Run(how, func(t *testing.T) {
			rs := redistest.StartServer(t, redistest.ServerOptions{})
			srv := startProxy(t, testConfig(), newRoutes(rs.Addr))
			srv.noHold.Store(true)
			addr := srv.Addr().String()
			writer, reader, mixed := dialRaw(t, addr), dialRaw(t, addr), dialRaw(t, addr)
			writer.do("+OK\r\n", "SET", "paused", "before")
			reader.do("+PONG\r\n", "PING")
			mixed.do("+PONG\r\n", "PING")
			admin := dialRaw(t, rs.Addr) // directly: the kill must not go through the proxy
			admin.do("+OK\r\n", "CLIENT", "PAUSE", "20000", "WRITE")
			t.Cleanup(func() { _ = rs.Client().Do(context.Background(), "CLIENT", "UNPAUSE").Err() })
			writer.send("SET", "paused", "after")
			time.Sleep(20 * time.Millisecond)
			reader.write(string(appendCommandStrings(appendCommandStrings(nil, "GET", "paused"), "EXISTS", "paused")))
			mixed.write(string(appendCommandStrings(appendCommandStrings(nil, "INCR", "n"), "GET", "paused")))
			time.Sleep(100 * time.Millisecond)
			want := bulk("before")
			if how == "client-kill" {
				admin.send("CLIENT", "KILL", "TYPE", "normal")
				if got := admin.reply(); !strings.HasPrefix(got, ":") {
					t.Fatalf("CLIENT KILL TYPE normal: %q", got)
				}
			} else {
				rs.Restart() // empty (no persistence), not paused
				want = "$-1\r\n"
			}
			for _, c := range []struct {
				cl   *rawClient
				want []string
			}{
				{writer, []string{ReplyLostMaster}},
				{reader, []string{want, map[bool]string{true: ":1\r\n", false: ":0\r\n"}[how == "client-kill"]}},
				{mixed, []string{ReplyLostMaster, want}},
			} {
				for _, w := range c.want {
					got, err := c.cl.replyWithin(5 * time.Second)
					if err != nil || got != w {
						t.Fatalf("after the shared connection died (%s): %q, %v; want %q", how, got, err, w)
					}
				}
			}
			_ = rs.Client().Do(context.Background(), "CLIENT", "UNPAUSE").Err()
			// the writes were not sent again
			reader.do(want, "GET", "paused")
			reader.do("$-1\r\n", "GET", "n")
		})
	}
}
