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
// A connection is stalled when, having waited stallProbeAfter, a PING on
// a fresh connection (the probe) is answered within stallProbeWait while
// it still waits and nothing arrived on it meanwhile: the server answers
// others (-BUSY, or +PONG during a write pause) but not it (a large reply
// still streaming, or a reader behind, is no stall). A slow command (or a script before
// busy-reply-threshold) holds the probe too, as it would hold a direct
// connection, so it is not taken for a stall: moving would gain nothing.
// Past muxStallAfter a connection is stalled whatever the probe says.
const (
	stallProbeAfter = 100 * time.Millisecond
	stallProbeWait  = 50 * time.Millisecond
	muxStallAfter   = time.Second
)

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
			switch {
			case since == 0 || m.dead:
			case waited > muxStallAfter:
				srv.markStalled(m, waited, "bound")
			case waited > stallProbeAfter && !m.probing:
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
func (srv *Server) markStalled(m *muxConn, waited time.Duration, by string) {
	m.stalled.Store(true)
	srv.muxStalls.Add(1)
	srv.log.Info("shared backend connection waits for a reply (busy script, paused write, slow command); new commands go to a fresh one",
		"backend_addr", m.addr, "waiting", waited.Round(time.Millisecond), "sessions", len(m.members), "detected_by", by)
}

// probeStall opens a connection to m's server: m is stalled if it is
// answered quickly while m still waits for the reply it waited for since.
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
	if err != nil || took > stallProbeWait || ctx.Err() != nil || m.reads.Load() != reads ||
		m.waitingSince != since || m.dead || m.stalled.Load() {
		return
	}
	srv.markStalled(m, time.Duration(time.Now().UnixNano()-since), "probe")
}
