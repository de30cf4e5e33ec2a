package proxy

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redhaven/redhaven/e2e/redistest"
)

// TestStoppedServerIsNoStall: a server that answers nobody for 2 s (SIGSTOP,
// as a loaded machine or a stalled VM does to it) and then answers in
// order is not a stalled shared connection: the commands waiting on it
// are answered there, and no fresh connection is opened for nothing (the
// 1 s bound used to decide "stalled" whatever the probe said).
func TestStoppedServerIsNoStall(t *testing.T) {
	rs := redistest.StartServer(t, redistest.ServerOptions{})
	srv := startProxy(t, testConfig(), newRoutes(rs.Addr))
	addr := srv.Addr().String()
	pid := rs.PID()
	cont := func() { _ = syscall.Kill(pid, syscall.SIGCONT) }
	t.Cleanup(cont)
	for _, proto := range protocols {
		t.Run(fmt.Sprintf("RESP%d", proto), func(t *testing.T) {
			a, b := pingedPair(t, addr, proto)
			stalls := srv.muxStalls.Load()
			if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
				t.Fatalf("SIGSTOP: %v", err)
			}
			a.send("SET", "stopped", "v")
			b.send("GET", "stopped")
			time.Sleep(2 * time.Second)
			cont()
			if got, err := a.replyWithin(10 * time.Second); err != nil || got != "+OK\r\n" {
				t.Fatalf("SET across the stop: %q, %v", got, err)
			}
			if got, err := b.replyWithin(10 * time.Second); err != nil || !strings.HasPrefix(got, "$") && !strings.HasPrefix(got, "_") {
				t.Fatalf("GET across the stop: %q, %v", got, err)
			}
			// a probe sent during the stop ends within dial_timeout
			time.Sleep(testConfig().DialTimeout + 500*time.Millisecond)
			if n := srv.muxStalls.Load() - stalls; n != 0 {
				t.Fatalf("a server stopped for 2 s, then answering in order, stalled %d shared connections; want 0", n)
			}
			a.do("+PONG\r\n", "PING")
			b.do("+PONG\r\n", "PING")
		})
	}
}

// TestStallProbeEvidence drives the probe with a shared connection of the
// test's own (in the pool, so the checker looks at it, but with no
// session on it) that waits for a reply while the real server answers
// others at once: it is stalled only when its command was written and
// nothing waits unread in its socket. An unwritten command (the writer not
// yet run on a loaded machine) or a reply the reader has not read yet
// proves nothing.
func TestStallProbeEvidence(t *testing.T) {
	rs := redistest.StartServer(t, redistest.ServerOptions{})
	srv := startProxy(t, testConfig(), newRoutes(rs.Addr))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	for _, tc := range []struct {
		name    string
		written bool
		unread  bool
		stalled bool
	}{
		{"unwritten", false, false, false},
		{"reply unread", true, true, false},
		{"written, no reply", true, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			peer, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer peer.Close()
			if tc.unread {
				if _, err := peer.Write([]byte("+OK\r\n")); err != nil {
					t.Fatal(err)
				}
				deadline := time.Now().Add(5 * time.Second)
				for unreadBytes(c) == 0 && time.Now().Before(deadline) {
					time.Sleep(10 * time.Millisecond)
				}
				if unreadBytes(c) == 0 {
					t.Fatal("unreadBytes: 0 with a reply waiting in the socket")
				}
			}
			key := muxKey{rs.Addr, 2}
			m := &muxConn{srv: srv, key: key, addr: rs.Addr, proto: 2, conn: c, members: map[*backendConn]struct{}{}}
			m.waitingSince = time.Now().Add(-time.Second).UnixNano()
			m.queued, m.waitFor = 10, 10
			if tc.written {
				m.written = 10
			}
			p := &srv.mux
			p.mu.Lock()
			p.conns[key] = append(p.conns[key], m)
			p.mu.Unlock()
			defer func() {
				p.mu.Lock()
				ms := p.conns[key]
				for i, x := range ms {
					if x == m {
						p.conns[key] = append(ms[:i:i], ms[i+1:]...)
					}
				}
				if len(p.conns[key]) == 0 {
					delete(p.conns, key)
				}
				p.mu.Unlock()
			}()
			// The checker (every 50 ms) probes it; a probe to a server
			// answering at once takes well under the second it waited.
			// Where no stall is wanted, 3 s of probes (or none) show none;
			// where one is, it comes within 15 s on a loaded machine.
			probes := 0
			watch := 3 * time.Second
			if tc.stalled {
				watch = 15 * time.Second
			}
			deadline := time.Now().Add(watch)
			for time.Now().Before(deadline) && !m.stalled.Load() {
				srv.checkStalls(context.Background(), time.Now())
				m.mu.Lock()
				if m.probing {
					probes++
				}
				m.mu.Unlock()
				time.Sleep(20 * time.Millisecond)
			}
			for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
				m.mu.Lock()
				probing := m.probing
				m.mu.Unlock()
				if !probing {
					break
				}
			}
			if got := m.stalled.Load(); got != tc.stalled {
				t.Fatalf("stalled %v, want %v (probes seen %d)", got, tc.stalled, probes)
			}
			if !tc.written && probes > 0 {
				t.Fatalf("%d probes for a command not written yet; want none", probes)
			}
		})
	}
}

// TestEarlyCommandBehindBusyScript: a command sent on the shared
// connection of a busy script before the stall is seen (d = 50 ms after
// EVAL 'while true do end' 0, busy-reply-threshold 100 ms, the probe
// starting at 100 ms) gets -BUSY as on a direct connection: the
// connection held it back once it had waited muxHoldAfter, and the stall
// sent it to a fresh one. It used to be written behind the script and
// wait for it to end (forever here, until SCRIPT KILL). A hold set late
// on a loaded machine (the checker not run by 50 ms) lets the command be
// written as before: up to 3 tries per protocol, one must pass.
func TestEarlyCommandBehindBusyScript(t *testing.T) {
	rs := redistest.StartServer(t, redistest.ServerOptions{Extra: []string{"--busy-reply-threshold", "100"}})
	cfg := testConfig()
	srv := startProxy(t, cfg, newRoutes(rs.Addr))
	addr := srv.Addr().String()
	for _, proto := range protocols {
		t.Run(fmt.Sprintf("RESP%d", proto), func(t *testing.T) {
			var tries []string
			for try := 0; try < 3; try++ {
				busy, other := pingedPair(t, addr, proto)
				moved := srv.muxHeldMoved.Load()
				busy.send("EVAL", "while true do end", "0")
				time.Sleep(50 * time.Millisecond)
				start := time.Now()
				other.send("PING")
				got, err := other.replyWithin(2 * time.Second)
				took := time.Since(start)
				killer := dialRaw(t, rs.Addr) // directly: the proxy's way is under test
				killer.send("SCRIPT", "KILL")
				if k := killer.reply(); k != "+OK\r\n" {
					t.Fatalf("SCRIPT KILL: %q", k)
				}
				if b := busy.reply(); !strings.HasPrefix(b, "-") {
					t.Fatalf("the killed script: %q, want an error", b)
				}
				if err == nil && strings.HasPrefix(got, "-BUSY") {
					if cfg.Multiplex && srv.muxHeldMoved.Load() == moved {
						t.Fatalf("-BUSY in %v, but no held command was moved (muxHeldMoved)", took)
					}
					t.Logf("try %d: -BUSY in %v", try+1, took.Round(time.Millisecond))
					return
				}
				if err != nil {
					got = other.reply() // answered once the script ended
				}
				tries = append(tries, fmt.Sprintf("%q after %v (%v)", firstLine([]byte(got)), took.Round(time.Millisecond), err))
			}
			t.Fatalf("PING sent 50 ms after a busy script started, 3 tries: %v; want -BUSY within 2 s (the script ran until killed)", tries)
		})
	}
}

// TestPausedWriteEarlyReadsInOrder: reads sent in three batches 50-70 ms
// after a write held by CLIENT PAUSE WRITE, on the same shared connection,
// are held back, moved together when the probe sees the server answer
// others, and answered at once in their order; the writer's own read,
// sent behind its paused write, stays behind it and comes after it.
func TestPausedWriteEarlyReadsInOrder(t *testing.T) {
	rs := redistest.StartServer(t, redistest.ServerOptions{})
	srv := startProxy(t, testConfig(), newRoutes(rs.Addr))
	addr := srv.Addr().String()
	writer, reader := pingedPair(t, addr, 2)
	for _, k := range []string{"a", "b", "c"} {
		writer.do("+OK\r\n", "SET", "early:"+k, k)
	}
	admin := dialRaw(t, rs.Addr)
	admin.do("+OK\r\n", "CLIENT", "PAUSE", "20000", "WRITE")
	t.Cleanup(func() { _ = rs.Client().Do(context.Background(), "CLIENT", "UNPAUSE").Err() })
	writer.send("SET", "early:a", "after")
	time.Sleep(50 * time.Millisecond)
	start := time.Now()
	for _, k := range []string{"a", "b", "c"} {
		reader.send("GET", "early:"+k)
		time.Sleep(10 * time.Millisecond)
	}
	writer.send("GET", "early:b")
	for _, k := range []string{"a", "b", "c"} {
		got, err := reader.replyWithin(3 * time.Second)
		if err != nil || got != bulk(k) {
			t.Fatalf("GET early:%s during a paused write (after %v): %q, %v; want %q", k, time.Since(start).Round(time.Millisecond), got, err, bulk(k))
		}
	}
	t.Logf("3 reads answered %v after the first was sent", time.Since(start).Round(time.Millisecond))
	if _, err := writer.replyWithin(300 * time.Millisecond); err == nil {
		t.Fatal("the paused writer got a reply before the pause ended")
	}
	admin.do("+OK\r\n", "CLIENT", "UNPAUSE")
	writer.expect("+OK\r\n")
	writer.expect(bulk("b"))
	reader.do(bulk("after"), "GET", "early:a")
}

// TestSlowScriptHeldCommandsInOrder: while a 400 ms script (below
// busy-reply-threshold) holds the shared connection, commands that other
// clients (and the script's own client) send in batches 0-300 ms after it
// are held back, not moved, and answered once it ends: every one, once,
// in each client's order (INCR on a key of each client counts them).
func TestSlowScriptHeldCommandsInOrder(t *testing.T) {
	rs := redistest.StartServer(t, redistest.ServerOptions{})
	cfg := testConfig()
	srv := startProxy(t, cfg, newRoutes(rs.Addr))
	addr := srv.Addr().String()
	const spin = `local t = redis.call('TIME'); local t0 = t[1] * 1000000 + t[2]
while true do t = redis.call('TIME'); if t[1] * 1000000 + t[2] - t0 > 400000 then break end end
return 1`
	for _, proto := range protocols {
		t.Run(fmt.Sprintf("RESP%d", proto), func(t *testing.T) {
			const clients, perBatch = 4, 3
			slow := dialProto(t, addr, proto)
			slow.do("+PONG\r\n", "PING")
			others := make([]*rawClient, clients)
			for i := range others {
				others[i] = dialProto(t, addr, proto)
				others[i].do("+PONG\r\n", "PING")
			}
			prefix := fmt.Sprintf("held%d:", proto)
			stalls, holds := srv.muxStalls.Load(), srv.muxHolds.Load()
			slow.send("EVAL", spin, "0")
			start := time.Now()
			sent := make([]int, clients+1) // INCRs per client; the last is the script's own
			batch := func(i int, c *rawClient) {
				var b []byte
				for j := 0; j < perBatch; j++ {
					b = appendCommandStrings(b, "INCR", prefix+strconv.Itoa(i))
				}
				c.write(string(b))
				sent[i] += perBatch
			}
			for _, d := range []time.Duration{0, 30 * time.Millisecond, 60 * time.Millisecond, 120 * time.Millisecond, 200 * time.Millisecond, 300 * time.Millisecond} {
				time.Sleep(time.Until(start.Add(d)))
				for i, c := range others {
					batch(i, c)
				}
				if d >= 120*time.Millisecond {
					batch(clients, slow)
				}
			}
			slow.expect(":1\r\n")
			for i := 0; i <= clients; i++ {
				c := slow
				if i < clients {
					c = others[i]
				}
				for n := 1; n <= sent[i]; n++ {
					got, err := c.replyWithin(10 * time.Second)
					if want := fmt.Sprintf(":%d\r\n", n); err != nil || got != want {
						t.Fatalf("client %d, INCR %d of %d: %q, %v; want %q", i, n, sent[i], got, err, want)
					}
				}
				if got, err := c.replyWithin(100 * time.Millisecond); err == nil {
					t.Fatalf("client %d: a reply more than its %d INCRs: %q", i, sent[i], got)
				}
				if v, err := rs.Client().Get(context.Background(), prefix+strconv.Itoa(i)).Int(); err != nil || v != sent[i] {
					t.Fatalf("client %d: the key counts %d, %v; want %d (each INCR once)", i, v, err, sent[i])
				}
			}
			if n := srv.muxStalls.Load() - stalls; n != 0 {
				t.Fatalf("a 400 ms script (below busy-reply-threshold) stalled %d shared connections; want 0", n)
			}
			if cfg.Multiplex && srv.muxHolds.Load() == holds {
				t.Fatal("no shared connection held commands back during a 400 ms script (muxHolds)")
			}
		})
	}
}
