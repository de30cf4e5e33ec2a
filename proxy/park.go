package proxy

import (
	"runtime/debug"
	"time"
)

// Idle sessions are parked: their goroutine ends and their socket waits
// in the idle poller (park_linux.go) until the client sends something,
// when a new goroutine takes the session up where it left off. A goroutine
// costs ~4 KiB of stack, most of an idle client's memory (make
// bench-idle); an idle session keeps only its struct and socket.
//
// Only a session with nothing in flight, nothing to write, no input
// buffered and no dedicated backend connection is parked (a dedicated
// connection has its own reader goroutine and state), so a parked session
// has nothing to do until its client sends, the route changes (kick) or
// the server stops (shutdown): kick and shutdown resume it.

const (
	// parkSweep: how often idle sessions are looked for; a session that
	// read nothing since the previous sweep is parked (after 0.5-1 s idle).
	parkSweep = 500 * time.Millisecond
	// freeStacksAfter: once this many sessions parked since the last time,
	// the ended goroutines' stacks are handed back to the OS (a GC and a
	// scavenge), at most every freeStacksEvery.
	freeStacksAfter = 1000
	freeStacksEvery = 2 * time.Second
)

// parkLoop asks idle sessions to park, every parkSweep until stop closes.
func (srv *Server) parkLoop(stop <-chan struct{}) {
	t := time.NewTicker(parkSweep)
	defer t.Stop()
	var idle []*session
	var lastFree time.Time
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		idle = idle[:0]
		srv.mu.Lock()
		for s := range srv.sessions {
			in := s.bytesIn.Load()
			if be := s.curBE.Load(); be != nil && be.mux == nil {
				continue // a dedicated connection: never parked, not woken for nothing
			}
			if s.fd < 0 {
				continue // no socket to poll (TLS: the tls.Conn holds state): never parked
			}
			if in == s.sweepIn && !s.parked.Load() {
				idle = append(idle, s)
			}
			s.sweepIn = in
		}
		srv.mu.Unlock()
		for _, s := range idle {
			s.parkReq.Store(true)
			_ = s.client.SetReadDeadline(aLongTimeAgo) // wakes the read
		}
		clear(idle)
		if srv.parkedSinceFree.Load() >= freeStacksAfter && time.Since(lastFree) >= freeStacksEvery {
			srv.parkedSinceFree.Store(0)
			lastFree = time.Now()
			debug.FreeOSMemory()
		}
	}
}

// tryPark parks the session if it is idle (its goroutine must return
// at once when it says true: another may have taken the session up).
func (s *session) tryPark() bool {
	p := s.srv.idle
	if p == nil || !s.wmu.TryLock() {
		return false
	}
	if s.parkLocked(p) {
		s.wmu.Unlock() // nothing can be pending: nothing is in flight
		return true
	}
	// A reader may have queued replies while we held wmu: the holder of
	// wmu writes them (see emitLocals).
	s.releaseOut()
	return false
}

// parkLocked parks the session if it is idle (wmu held).
func (s *session) parkLocked(p *idlePoller) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.q.len() > 0 || s.unsent > 0 || s.closing || s.quitting || s.ownConn || s.subscribedLocked() ||
		!s.clientOutput.idle() ||
		s.rr.buffered() || !s.retryAt.IsZero() || (s.be != nil && s.be.mux == nil) || s.logSent != s.logEnd() {
		return false
	}
	// An idle session keeps no buffers.
	s.rr.release()
	s.q.buf = nil // head and tail stay: sequence numbers go on
	s.pend, s.out, s.sendLog = nil, nil, nil
	s.logBase = s.logSent
	_ = s.client.SetReadDeadline(time.Time{})
	if s.fd < 0 {
		return false
	}
	s.l.parked.Add(1) // before: once parked, a resume may come at once and count it out
	if !p.park(s) {
		s.l.parked.Add(-1)
		return false
	}
	s.srv.parkedSinceFree.Add(1)
	return true
}

// resume takes a parked session up again in a new goroutine (after kick
// or shutdown; the idle poller does the same when the client sends).
func (s *session) resume() {
	if s.parked.Load() && s.srv.idle.unpark(s) {
		go s.serve()
	}
}
