package proxy

import (
	"context"
	"time"
)

// muxStallAfter is how long a shared connection may wait for a reply
// before it takes no new commands. A script running (EVAL 'while true do
// end'), a write held by CLIENT PAUSE WRITE or a slow command holds every
// command queued behind it on the connection; a direct connection would
// get -BUSY at once, or have its reads go through. Past this bound, the
// other sessions move to a fresh shared connection (their next command
// goes there: -BUSY from a busy server, reads during a write pause); the
// session waiting for the slow reply keeps the stalled connection until
// its replies are in. Commands already queued behind the slow one wait
// for it, as they were sent.
const muxStallAfter = time.Second

// stallCheckEvery is how often shared connections are looked at.
const stallCheckEvery = 100 * time.Millisecond

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
		srv.checkStalls(time.Now())
	}
}

func (srv *Server) checkStalls(now time.Time) {
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
			if since != 0 && now.UnixNano()-since > int64(muxStallAfter) && !m.dead {
				m.stalled.Store(true)
				srv.log.Info("shared backend connection waits for a reply (busy script, paused write, slow command); new commands go to a fresh one",
					"backend_addr", m.addr, "waiting", time.Duration(now.UnixNano()-since).Round(time.Millisecond), "sessions", len(m.members))
			}
			m.mu.Unlock()
		}
	}
	p.mu.Unlock()
}
