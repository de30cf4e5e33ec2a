package proxy

import (
	"context"
	"time"
)

// A shared connection waiting for a reply holds every command queued
// behind it: a script running (EVAL 'while true do end'), a write held by
// CLIENT PAUSE WRITE, a slow command. A direct connection would get -BUSY
// at once from a busy server, or have its reads go through a write pause.
// A stalled connection takes no new commands: the other sessions move to
// a fresh shared connection (their next command goes there); the session
// waiting for the slow reply keeps the stalled connection until its
// replies are in. Commands already queued behind the slow one wait for
// it, as they were sent.
//
// A connection is stalled when a PING on a fresh connection (the probe),
// sent once it has waited stallProbeAfter with the command it waits for
// written, is answered (-BUSY counts) while it still waits: nothing
// arrived on it meanwhile and nothing waits unread in its socket. The
// server then answered a command sent after the one it holds: it answers
// others (-BUSY, or +PONG during a write pause) but not this one (a large
// reply still streaming, or a reader behind, is no stall). A slow command
// (or a script before busy-reply-threshold) holds the probe too, as it
// would hold a direct connection, and its reply comes first: no stall,
// moving would gain nothing.
//
// There is no time bound that decides alone: on a loaded machine (load
// 20+) everything is slow, a stopped or starved server answers late but
// in order, and a wait of any length is no proof that the server answers
// others. Nor does a probe that itself took longer than the connection
// had waited when it started prove anything: the machine, not the
// server, is slow then (the next probe is compared with a longer wait).
const stallProbeAfter = 100 * time.Millisecond

// stallCheckEvery is how often shared connections are looked at.
const stallCheckEvery = 50 * time.Millisecond

// stallCheckLoop marks stalled shared connections (muxConn.stalled).
func (srv *Server) stallCheckLoop(ctx context.Context) {
	t := time.NewTicker(stallCheckEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		srv.checkStalls(ctx, time.Now())
	}
}

func (srv *Server) checkStalls(ctx context.Context, now time.Time) {
	// Members are not woken: each moves at its next command
	// (sendableLocked), so thousands of idle or parked sessions do not
	// all redial at once.
	p := &srv.mux
	p.mu.Lock()
	for _, ms := range p.conns {
		for _, m := range ms {
			if m.stalled.Load() || m.retired.Load() {
				continue
			}
			m.mu.Lock()
			since := m.waitingSince
			waited := time.Duration(now.UnixNano() - since)
			// probe only once the command waited for is written
			if since != 0 && !m.dead && !m.probing && waited > stallProbeAfter && m.written >= m.waitFor {
				m.probing = true
				p.wg.Add(1)
				go func() {
					defer p.wg.Done()
					srv.probeStall(ctx, m, since)
				}()
			}
			m.mu.Unlock()
		}
	}
	p.mu.Unlock()
}

// markStalled stops m taking new commands (m.mu held).
func (srv *Server) markStalled(m *muxConn, waited time.Duration) {
	m.stalled.Store(true)
	srv.muxStalls.Add(1)
	srv.log.Info("shared backend connection waits for a reply (busy script, paused write, slow command); new commands go to a fresh one",
		"backend_addr", m.addr, "waiting", waited.Round(time.Millisecond), "sessions", len(m.members))
}

// probeStall opens a connection to m's server: m is stalled if it is
// answered while m still waits for the reply it waited for since, with
// nothing read or waiting to be read, and the probe took less time than m
// had waited when it started.
func (srv *Server) probeStall(ctx context.Context, m *muxConn, since int64) {
	start, reads := time.Now(), m.reads.Load()
	pc, err := srv.dialMux(m.key) // HELLO/AUTH as for m, then PING (-BUSY counts as an answer)
	took := time.Since(start)
	if err == nil {
		_ = pc.conn.Close()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.probing = false
	if err != nil || ctx.Err() != nil || m.reads.Load() != reads ||
		m.waitingSince != since || m.dead || m.stalled.Load() {
		return
	}
	if before := time.Duration(start.UnixNano() - since); took >= before {
		return // the probe was as slow as the wait it tests: a slow machine
	}
	if unreadBytes(m.conn) > 0 {
		return // the reply is in: the reader is behind (a loaded machine)
	}
	srv.markStalled(m, time.Duration(time.Now().UnixNano()-since))
}
