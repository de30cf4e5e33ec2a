package proxy

import (
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Clean stop (no hand-over): Redis has no "go away" message, so a client
// learns that it must reconnect from a closed connection. Closed at a
// command boundary, right after a reply (the FIN follows the reply), a
// pooled client (go-redis, redis-py, ...) sees the close when it takes the
// connection for its next command and dials again: no command fails. A
// close while a command is on its way fails that command.
//
// So a stop drains in three steps (Run):
//  1. every session closes at its next command boundary: a busy one
//     after its in-flight replies, an idle one after its next command
//     (closing it at once could cross that command), one with a partial
//     command once it is complete and answered; new connections are still
//     accepted (the VIP may still be here) and each closes after its
//     first command past the setup. DrainedFirst is closed once the
//     sessions open at the start are gone; those still idle after
//     drainFirstLimit are closed then: the node removes the VIP, when no
//     command of theirs is on its way.
//  2. the stop gate (SetStopGate): until the VIP has left this host, so
//     that a client dialing again reaches the next holder, not a closed
//     port here (at most drainGateLimit).
//  3. the listeners close; the sessions left get drainLimit to reach
//     their boundary, then are closed.
//
// The replies of step 2 and 3 may leave after the VIP left the interface:
// accepted sockets get IP_TRANSPARENT (SetTransparent) so that the kernel
// still sends from the VIP's address.
const (
	drainFirstLimit = 100 * time.Millisecond
	drainGateLimit  = 2 * time.Second
	drainLimit      = time.Second
)

// drainState is the server's clean-stop drain.
type drainState struct {
	gate        atomic.Pointer[func() <-chan struct{}]
	first       chan struct{} // DrainedFirst
	firstOnce   sync.Once
	transparent atomic.Bool
}

func (d *drainState) closeFirst() { d.firstOnce.Do(func() { close(d.first) }) }

// SetStopGate sets what a clean stop waits for before it closes the
// listening sockets (step 2): the returned channel is closed once this
// host no longer has the VIP. Without a gate the listeners close at once.
func (srv *Server) SetStopGate(gate func() <-chan struct{}) { srv.drain.gate.Store(&gate) }

// SetTransparent makes accepted client sockets IP_TRANSPARENT, so that a
// reply written after the VIP left the interface still goes out (needs
// CAP_NET_ADMIN, which the VIP needs anyway; without it, logged once).
func (srv *Server) SetTransparent(on bool) { srv.drain.transparent.Store(on) }

// DrainedFirst is closed once a clean stop has closed the sessions that
// were open when it began (or gave up waiting), and at once when the
// server stops otherwise (a hand-over).
func (srv *Server) DrainedFirst() <-chan struct{} { return srv.drain.first }

// runDrain is a clean stop's drain (steps 1-3 above; the caller closes
// what is left).
func (srv *Server) runDrain() {
	defer srv.drain.closeFirst()
	start := time.Now()
	// Fixed when it starts: the sessions read them without a lock.
	run := &handoverRun{drain: true, lastOld: srv.nextID.Load(), firstUntil: start.Add(drainFirstLimit),
		deadline: start.Add(drainFirstLimit + drainGateLimit + drainLimit)}
	run.txUntil = run.deadline.Add(-drainLimit / 2)
	if !srv.handover.cur.CompareAndSwap(nil, run) {
		return // a hand-over runs: it owns the sessions
	}
	old := srv.finAll()
	srv.waitSessions(run.firstUntil, func() bool { return srv.oldSessions(run.lastOld) == 0 })
	// The old sessions that said nothing close now (kicked), before the
	// address goes.
	srv.waitSessions(time.Now().Add(20*time.Millisecond), func() bool { return srv.oldSessions(run.lastOld) == 0 })
	firstTook := time.Since(start)
	srv.drain.closeFirst()
	gateTook := time.Duration(0)
	if g := srv.drain.gate.Load(); g != nil {
		t := time.NewTimer(drainGateLimit)
		select {
		case <-(*g)():
		case <-t.C:
			srv.log.Warn("stop: the VIP did not leave this host in time; closing the listeners anyway", "waited", drainGateLimit)
		}
		t.Stop()
		gateTook = time.Since(start) - firstTook
	}
	for _, l := range srv.listeners() {
		_ = l.ln.Close()
	}
	srv.handover.accepting.Wait()
	end := time.Now().Add(drainLimit)
	if run.deadline.Before(end) {
		end = run.deadline
	}
	srv.waitSessions(end, func() bool { return srv.sessionCount() == 0 })
	run.mu.Lock()
	drained, cut := run.drained, run.closed
	run.mu.Unlock()
	srv.log.Info("stop: client connections closed after their last reply", "open_at_stop", old,
		"at_boundary", drained, "cut", cut+srv.sessionCount(), "first", firstTook.Round(time.Millisecond),
		"gate", gateTook.Round(time.Millisecond), "took", time.Since(start).Round(time.Millisecond))
}

// waitSessions kicks the sessions (again every 50 ms: one that slept
// somewhere long looks again) until done or deadline.
func (srv *Server) waitSessions(deadline time.Time, done func() bool) {
	srv.kickAll()
	lastKick := time.Now()
	for !done() && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
		if time.Since(lastKick) > 50*time.Millisecond {
			srv.kickAll()
			lastKick = time.Now()
		}
	}
}

// finAll marks every session outside a transaction for a FIN with its
// next reply (a reply already on its way when the drain began, to a
// client that sends its next command as soon as it has it); it returns
// how many sessions there are.
func (srv *Server) finAll() int {
	srv.mu.Lock()
	all := make([]*session, 0, len(srv.sessions))
	for s := range srv.sessions {
		all = append(all, s)
	}
	srv.mu.Unlock()
	for _, s := range all {
		s.mu.Lock()
		if !s.inMulti && !s.watching {
			s.drainFin = true
			// one with a reply on its way is done after it; an idle one
			// serves its next command first (closing it now could cross
			// that command: the client would get a reset)
			s.drainServed = s.q.len() > 0 || s.inflight > 0 || s.unsent > 0
		}
		s.mu.Unlock()
	}
	return len(all)
}

// oldSessions counts the sessions with an id up to last.
func (srv *Server) oldSessions(last uint64) int {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	n := 0
	for s := range srv.sessions {
		if s.id <= last {
			n++
		}
	}
	return n
}

// drainServing says whether a session goes on serving during a drain
// before it may close: it has a partial command, or a command waits
// unread in its socket, or it has not been answered during the drain yet
// (its client sends a command soon: an open one within the first step,
// one that just dialed until the drain's end).
func (s *session) drainServing(run *handoverRun) bool {
	now := time.Now()
	if !now.Before(run.deadline) {
		return false
	}
	if s.rr.buffered() || inputPending(s.client) {
		return true
	}
	s.mu.Lock()
	served := s.drainServed
	s.mu.Unlock()
	return !served && (s.id > run.lastOld || now.Before(run.firstUntil))
}

// drainClose ends a session at its command boundary in a drain: once its
// replies are written, it closes (run's teardown). A session past the
// deadline with output still unread by its client is closed as it is.
func (s *session) drainClose(run *handoverRun) bool {
	for !s.outputIdle() {
		if !time.Now().Before(run.deadline) {
			return s.handoffClose(run, "stop: replies not yet read by the client")
		}
		s.emitLocals()
		s.sleep(time.Now().Add(time.Millisecond))
	}
	run.mu.Lock()
	run.drained++
	run.mu.Unlock()
	s.debug("stop: client connection closed at a command boundary")
	return true
}

// setupCommand says whether a command belongs to a connection's setup
// (what a client library sends right after it dials): a drain does not
// close a session after those, but after the first command that follows.
func setupCommand(name []byte) bool {
	for _, c := range [...]string{"HELLO", "AUTH", "CLIENT", "SELECT", "READONLY", "READWRITE"} {
		if len(name) == len(c) && strings.EqualFold(string(name), c) {
			return true
		}
	}
	return false
}
