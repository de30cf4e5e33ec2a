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
// replies are in. Commands written behind the slow one wait for it, as
// they were sent; those sent once it had waited muxHoldAfter were held
// back, and go to the fresh connection too (see muxHoldAfter).
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

// stallCheckEvery is how often shared connections are probed.
const stallCheckEvery = 50 * time.Millisecond

// A command written behind the one a connection waits for is read by
// Redis only after it: written, it waits for a busy script to end. So
// once a connection has waited muxHoldAfter for a reply already written,
// new commands are held back (muxConn.holding) instead of written: if the
// probe then finds the connection stalled, the commands of each session
// with nothing written still due go to a fresh connection, in their
// order (session.unhold), and get -BUSY at once as on a direct
// connection; else they are written when the reply comes (onData), in
// their order. Holding costs a command nothing it would not wait anyway
// (Redis serves a connection one command at a time, so nothing behind the
// reply waited for can be answered before it), but one round trip more
// once the reply came: the write after it. The bound is well below
// stallProbeAfter so that a command sent soon after a script started
// (d = 50 ms with busy-reply-threshold 100 ms) is held, not written.
const muxHoldAfter = 20 * time.Millisecond

// muxHoldCheckEvery is how often shared connections are looked at for
// holding; every stallCheckEvery of them they are also probed.
const muxHoldCheckEvery = 10 * time.Millisecond

// stallCheckLoop makes shared connections that wait hold new commands
// (muxConn.holding), and marks stalled ones (muxConn.stalled).
func (srv *Server) stallCheckLoop(ctx context.Context) {
	t := time.NewTicker(muxHoldCheckEvery)
	defer t.Stop()
	const probeEvery = int(stallCheckEvery / muxHoldCheckEvery)
	for tick := 1; ; tick++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		srv.checkHolds(now)
		if tick%probeEvery == 0 {
			srv.checkStalls(ctx, now)
		}
	}
}

// checkHolds makes the shared connections that have waited muxHoldAfter
// for a reply already written (and have none unread) hold new commands.
func (srv *Server) checkHolds(now time.Time) {
	if srv.noHold.Load() {
		return
	}
	p := &srv.mux
	p.mu.Lock()
	for _, ms := range p.conns {
		for _, m := range ms {
			if m.stalled.Load() || m.retired.Load() {
				continue
			}
			m.mu.Lock()
			since := m.waitingSince
			if since != 0 && !m.dead && !m.holding && m.written >= m.waitFor &&
				time.Duration(now.UnixNano()-since) > muxHoldAfter && unreadBytes(m.conn) == 0 {
				m.holding = true
				srv.muxHolds.Add(1)
			}
			m.mu.Unlock()
		}
	}
	p.mu.Unlock()
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
	for _, s := range srv.judgeProbe(ctx, m, since, start, reads, took, err) {
		s.kick() // to take its held commands back (unhold)
	}
}

// judgeProbe marks m stalled if the probe says so, and returns the
// sessions to wake to take their held commands back.
func (srv *Server) judgeProbe(ctx context.Context, m *muxConn, since int64, start time.Time, reads uint64, took time.Duration, err error) []*session {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.probing = false
	if err != nil || ctx.Err() != nil || m.reads.Load() != reads ||
		m.waitingSince != since || m.dead || m.stalled.Load() {
		return nil
	}
	if before := time.Duration(start.UnixNano() - since); took >= before {
		return nil // the probe was as slow as the wait it tests: a slow machine
	}
	if unreadBytes(m.conn) > 0 {
		return nil // the reply is in: the reader is behind (a loaded machine)
	}
	srv.markStalled(m, time.Duration(time.Now().UnixNano()-since))
	// What it held: a session with nothing written still due takes its
	// commands back for a fresh connection; the others' are written
	// behind their own slow reply, where their order puts them.
	var movers []*session
	for _, h := range m.held {
		if be := h.be; !be.moveHeld.Load() && int64(be.heldN) == be.due.Load() {
			be.moveHeld.Store(true)
			movers = append(movers, be.owner)
		}
	}
	m.releaseHeldLocked(func(be *backendConn) bool { return be.moveHeld.Load() })
	return movers
}

// muxHeld is a batch of commands a holding connection kept back.
type muxHeld struct {
	be *backendConn
	b  []byte
	n  int // replies due
}

// holdLocked keeps be's batch p (n replies due, at the session's log
// offset at) back (m.mu held).
func (m *muxConn) holdLocked(be *backendConn, p []byte, n int, at int64) {
	if be.heldLen == 0 {
		be.heldFrom = at
	}
	be.heldLen += len(p)
	be.heldN += n
	if n > 0 {
		be.due.Add(int64(n))
	}
	if k := len(m.held); k > 0 && m.held[k-1].be == be {
		m.held[k-1].b = append(m.held[k-1].b, p...)
		m.held[k-1].n += n
		return
	}
	m.held = append(m.held, muxHeld{be: be, b: append([]byte(nil), p...), n: n})
}

// releaseHeldLocked ends holding: the batches held (but those of the
// places keep says stay held) are queued for writing, in their order, and
// written by a goroutine of their own (m.mu held; the caller may be the
// reader, which must not wait for a write).
func (m *muxConn) releaseHeldLocked(keep func(*backendConn) bool) {
	m.holding = false
	rest := m.held[:0]
	for _, h := range m.held {
		be := h.be
		if keep != nil && keep(be) {
			rest = append(rest, h)
			continue
		}
		be.heldLen, be.heldN = 0, 0
		be.moveHeld.Store(false)
		m.wbuf = append(m.wbuf, h.b...)
		m.queued += uint64(len(h.b))
		if h.n > 0 {
			if m.pending.len() == 0 {
				m.waitingSince = time.Now().UnixNano()
				m.waitFor = m.queued
			}
			m.pending.push(muxPending{be: be, n: int32(h.n)})
		}
	}
	clear(m.held[len(rest):])
	m.held = rest
	if len(m.wbuf) > 0 && !m.writing && !m.dead {
		m.writing = true
		p := &m.srv.mux
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			m.mu.Lock()
			m.writeLocked()
			m.mu.Unlock()
		}()
	}
}

// takeHeld takes back the batches held for be: their bytes, the replies
// they are due and the session's log offset of the first.
func (m *muxConn) takeHeld(be *backendConn) (b []byte, n int, from int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	be.moveHeld.Store(false)
	if be.heldLen == 0 {
		return nil, 0, 0
	}
	from = be.heldFrom
	rest := m.held[:0]
	for _, h := range m.held {
		if h.be != be {
			rest = append(rest, h)
			continue
		}
		b = append(b, h.b...)
		n += h.n
	}
	clear(m.held[len(rest):])
	m.held = rest
	be.heldLen, be.heldN = 0, 0
	be.due.Add(-int64(n))
	return b, n, from
}

// dropHeldLocked forgets the batches held for be (it leaves; m.mu held).
func (m *muxConn) dropHeldLocked(be *backendConn) {
	if be.heldLen == 0 {
		return
	}
	rest := m.held[:0]
	for _, h := range m.held {
		if h.be != be {
			rest = append(rest, h)
		}
	}
	clear(m.held[len(rest):])
	m.held = rest
	be.due.Add(-int64(be.heldN))
	be.heldLen, be.heldN = 0, 0
	be.moveHeld.Store(false)
}

// unhold takes back the commands be's stalled shared connection held for
// the session (be.moveHeld): never written, they wait to be sent on a
// fresh connection, in their order, as after -READONLY (pipeline.resend).
// Commands that cannot move so (none expected: a shared connection
// carries no MULTI, no silent command, nothing unlogged) are handed back
// to it. Run by the session's goroutine, the only one that sends for be.
func (s *session) unhold(be *backendConn) {
	m := be.mux
	b, n, from := m.takeHeld(be)
	if len(b) == 0 {
		return
	}
	s.mu.Lock()
	moved := 0
	if s.be == be && !be.dead && !be.retiring && !be.discarding {
		moved = s.unholdLocked(be, from, len(b))
	}
	s.mu.Unlock()
	if moved == 0 {
		m.send(be, b, n, from)
		return
	}
	s.srv.muxHeldMoved.Add(int64(moved))
	s.debug("commands held on a stalled shared connection move to a fresh one", "backend_addr", be.addr, "commands", moved)
}

// unholdLocked marks the commands be held from log offset from (size
// bytes) to be sent again; it returns how many, 0 when they cannot move
// (a command of be before them still due, or not all logged).
func (s *session) unholdLocked(be *backendConn, from int64, size int) int {
	s.explode(&be.discardSeq)
	total, k := 0, 0
	for seq := s.q.head; seq < s.q.tail; seq++ {
		e := s.q.at(seq)
		if e.local != nil || e.gen != be.gen {
			continue
		}
		if e.start < from || e.flagsInMulti() {
			return 0
		}
		total += int(e.end - e.start)
		k++
	}
	if total != size {
		return 0
	}
	for seq := s.q.head; seq < s.q.tail; seq++ {
		if e := s.q.at(seq); e.local == nil && e.gen == be.gen {
			e.gen = 0
			s.unsent++
			s.inflight--
		}
	}
	s.heldMoved += k
	return k
}

// unholdAsked runs unhold when the shared connection asked for it.
func (s *session) unholdAsked() {
	s.mu.Lock()
	be := s.be
	s.mu.Unlock()
	if be != nil && be.mux != nil && be.moveHeld.Load() {
		s.unhold(be)
	}
}
