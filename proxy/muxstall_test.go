package proxy

import (
	"context"
	"fmt"
	"net"
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
