package proxy

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"math"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tidwall/redcon"
)

// bigCommand: commands above this are written straight from the read
// buffer and not kept for a resend (a -READONLY answer to one is returned
// to the client as it is).
const bigCommand = 1 << 20

var aLongTimeAgo = time.Unix(1, 0)

type action uint8

const (
	actRead  action = iota // keep reading the client
	actHold                // the next command needs a backend connection
	actClose               // stop reading; close once the last reply is out
)

// session is one client connection. Its goroutine (run) reads commands,
// answers the ones the proxy handles and sends the rest to the backend
// connection; the backend connection's reader goroutine (replies.go)
// matches replies with the FIFO of entries and writes them to the client.
//
// Locks: wmu (client output) before mu (everything shared). Neither is
// held across a wait; wmu is held across a write to the client.
type session struct {
	srv    *Server
	l      *listener
	id     uint64
	client net.Conn
	// closedFor: closeFor ran (a limit closed the client); a sweep that
	// comes before the session is gone must not close or count it again
	closedFor atomic.Bool

	// owned by run (changed under mu where the reader looks at them)
	rr          requestReader
	quitting    bool
	holdExpired bool   // a hold failed since the last client read
	drainStop   bool   // a drain's last batch was read: stop reading (drain.go)
	routeGen    uint64 // route generation the backend was checked against
	wbe         *backendConn
	batchCmds   int64
	localsReady bool
	retryAt     time.Time
	timer       *time.Timer
	bwg         sync.WaitGroup // backend reader goroutines
	// heldMoved: of the commands waiting to be sent again, those taken
	// back from a stalled shared connection (unhold), not counted as
	// resent
	heldMoved int
	// muxRoom: commands this batch may still send on its shared
	// connection before the session moves to its own (muxRoomLocked)
	muxRoom int

	wake      chan struct{}
	closed    chan struct{}
	closeOnce sync.Once

	// client output (output.go): wmu, then mu
	clientOutput

	mu sync.Mutex
	// the FIFO of commands owed a reply and the send log (pipeline.go),
	// under mu: written by run, answered by the backend reader
	pipeline
	be        *backendConn
	demoted   bool
	forceMove bool
	// demotedAddr answered -READONLY while route generation demotedGen was
	// current: no new connection goes there until the route changes.
	demotedAddr string
	demotedGen  uint64
	closing     bool
	drainWait   bool
	// drainFin: a drain stopped reading this session; its last reply
	// closes the write side (output.go finNext). drainServed: it was
	// answered (or had a reply on its way) during the drain
	drainFin, drainServed bool
	// replayFail is Redis's refusal of the state replayed on a new
	// connection when no command was waiting for an answer yet: the
	// client's next command gets it, then the session closes (closing at
	// once would give a command already on its way EOF instead).
	replayFail []byte
	// the client connection's state (connstate.go), under mu: written by
	// run, followed from replies by the backend reader
	connState

	commands, bytesIn, bytesOut, errs atomic.Int64
	curBE                             atomic.Pointer[backendConn]

	guard // connection hygiene and buffer budget (hygiene.go)

	// parking (park.go)
	fd          int         // the client socket's descriptor, -1 if unknown
	started     bool        // run has been called (owned by whichever goroutine runs it)
	parked      atomic.Bool // no goroutine: the socket waits in the idle poller
	parkReq     atomic.Bool // the sweep found the session idle
	kickPending atomic.Bool // kicked since the loop last looked at events
	sweepIn     int64       // bytesIn at the previous sweep (parkLoop's own)
}

func newSession(srv *Server, l *listener, c net.Conn, id uint64) *session {
	s := &session{
		srv: srv, l: l, id: id, client: c, fd: -1,
		rr:        newRequestReader(srv.cfg.MaxRequestBytes),
		connState: newConnState(srv.needAuth),
		wake:      make(chan struct{}, 1),
		closed:    make(chan struct{}),
	}
	s.guard.init(srv)
	s.rr.use = &s.guard.use
	if sc, ok := c.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			_ = rc.Control(func(fd uintptr) { s.fd = int(fd) })
		}
	}
	return s
}

// logger names the session in log lines. Made on use, not kept: a logger
// per session would cost every idle client memory (make bench-idle).
func (s *session) logger() *slog.Logger {
	return s.srv.log.With("listener", s.l.name, "client_addr", s.client.RemoteAddr().String())
}

func (s *session) debug(msg string, args ...any) {
	if s.srv.log.Enabled(context.Background(), slog.LevelDebug) {
		s.logger().Debug(msg, args...)
	}
}

func (s *session) isClosed() bool {
	select {
	case <-s.closed:
		return true
	default:
		return false
	}
}

// kick wakes the session goroutine, wherever it waits (a parked session
// gets a new one).
func (s *session) kick() {
	s.kickPending.Store(true) // before looking at parked: park stores parked, then looks here
	select {
	case s.wake <- struct{}{}:
	default:
	}
	_ = s.client.SetReadDeadline(aLongTimeAgo)
	s.resume()
}

// shutdown makes the session end (any goroutine may call it).
func (s *session) shutdown() {
	s.closeOnce.Do(func() { close(s.closed) })
	_ = s.client.SetDeadline(aLongTimeAgo)
	if be := s.curBE.Load(); be != nil && be.mux == nil {
		_ = be.conn.SetDeadline(aLongTimeAgo)
	}
	s.resume()
}

func (s *session) sleep(until time.Time) {
	d := time.Until(until)
	if d <= 0 {
		return
	}
	if s.timer == nil {
		s.timer = time.NewTimer(d)
	} else {
		s.timer.Reset(d)
	}
	select {
	case <-s.wake:
	case <-s.timer.C:
	case <-s.closed:
	}
	s.timer.Stop()
}

// serve runs the session in this goroutine until it ends or parks.
func (s *session) serve() {
	if s.run() {
		return // parked: the idle poller, kick or shutdown resumes it
	}
	s.srv.wg.Done()
}

// run serves the client until it leaves, the server stops or the session
// parks (true; see park.go).
func (s *session) run() (parked bool) {
	defer func() {
		if !parked {
			s.teardown()
		}
	}()
	if !s.started {
		s.started = true
		s.debug("client connected")
	}
	handle := func(n int) bool {
		s.rr.end += n
		s.bytesIn.Add(int64(n))
		s.holdExpired = false
		// a drain's last batch: back to the loop's top, which closes the
		// session after its replies
		return s.processInput() == actRead && !s.drainStop
	}
	for !s.isClosed() {
		s.kickPending.Store(false)
		s.handleEvents()
		if s.isClosed() {
			return false
		}
		if run := s.handoffNow(); run != nil {
			if s.handOff(run) { // handover.go
				return false
			}
			continue
		}
		act := actRead
		if s.quitting {
			act = actClose
		} else if s.rr.buffered() {
			act = s.processInput()
		}
		switch act {
		case actHold:
			if !s.ensureBackend(time.Now().Add(s.srv.holdTimeout()), true) && !s.handoverHolds() {
				s.holdExpired = true
				s.failUnsent()
			}
			continue
		case actClose:
			s.waitClose()
			return false
		}
		err := readLoop(s.client, s.rr.space, handle, s.rr.release)
		switch {
		case err == nil:
		case errors.Is(err, os.ErrDeadlineExceeded):
			if s.parkReq.Swap(false) && s.tryPark() {
				return true
			}
			_ = s.client.SetReadDeadline(s.retryAt)
		default:
			return false
		}
	}
	return false
}

func (s *session) teardown() {
	s.shutdown()
	s.mu.Lock()
	be := s.be
	s.mu.Unlock()
	if be != nil {
		s.retire(be, time.Time{})
	}
	s.bwg.Wait()
	_ = s.client.Close()
	s.srv.unregister(s)
	s.debug("client disconnected")
}

// waitClose lets the replies before a QUIT or a protocol error go out.
func (s *session) waitClose() {
	deadline := time.Now().Add(s.srv.holdTimeout() + time.Second)
	for {
		s.mu.Lock()
		done := s.closing || s.q.len() == 0
		s.mu.Unlock()
		if done || s.isClosed() || !time.Now().Before(deadline) {
			return
		}
		s.sleep(deadline)
	}
}

// handleEvents reacts to what happened while the session read its client:
// a route change, a lost or demoted backend, the end of the session.
func (s *session) handleEvents() {
	s.unholdAsked()
	s.mu.Lock()
	closing := s.closing
	unsent := s.unsent
	subscribed := s.subscribedLocked()
	needMove := s.be != nil && !s.sendableLocked()
	noBackend := s.be == nil
	failed, be := s.replayFail != nil, s.be
	s.mu.Unlock()
	if closing {
		s.shutdown()
		return
	}
	if failed {
		// no new connection: the next command gets the refusal
		if be != nil {
			s.retire(be, time.Time{})
		}
		return
	}
	if unsent > 0 {
		if !s.ensureBackend(time.Now().Add(s.srv.holdTimeout()), true) && !s.handoverHolds() {
			s.failUnsent()
		}
		return
	}
	if !needMove && !(noBackend && subscribed) {
		if !s.retryAt.IsZero() {
			s.retryAt = time.Time{}
			_ = s.client.SetReadDeadline(time.Time{})
		}
		return
	}
	ok := s.ensureBackend(time.Now().Add(s.srv.holdTimeout()), false)
	if !ok && subscribed {
		// keep trying to re-establish the subscriptions
		s.retryAt = time.Now().Add(100 * time.Millisecond)
	} else {
		s.retryAt = time.Time{}
	}
	_ = s.client.SetReadDeadline(s.retryAt)
}

func (s *session) subscribedLocked() bool { return s.connState.subscribed() }

// sendableLocked says whether commands may go to the current backend.
func (s *session) sendableLocked() bool {
	be := s.be
	if be == nil || be.dead || s.demoted || s.forceMove || s.unsent > 0 ||
		(be.mux != nil && (s.ownConn || be.mux.proto != s.muxProto || be.mux.retired.Load() ||
			(be.mux.stalled.Load() && s.inflight == 0 && !be.stallOK))) {
		return false
	}
	if g := s.srv.routeGen.Load(); g != s.routeGen {
		if !s.srv.valid(s, be.addr) {
			return false
		}
		s.routeGen = g
	}
	return true
}

// ensureBackend gets a backend connection commands may be sent to: it
// retires the old one (letting its in-flight replies arrive, bounded by
// deadline), dials the route's target and replays the session state. With
// wait it keeps trying until deadline.
func (s *session) ensureBackend(deadline time.Time, wait bool) bool {
	backoff := 20 * time.Millisecond
	for attempt := 0; ; attempt++ {
		s.mu.Lock()
		ok := s.sendableLocked()
		be := s.be
		s.mu.Unlock()
		if ok {
			return true
		}
		if s.isClosed() || s.handoverHolds() {
			return false
		}
		if attempt > 0 {
			if !wait || !time.Now().Before(deadline) {
				return false
			}
			next := time.Now().Add(backoff)
			if next.After(deadline) {
				next = deadline
			}
			if s.target() == "" {
				next = deadline // a route change wakes us
			}
			s.sleep(next)
			if backoff < 500*time.Millisecond {
				backoff *= 2
			}
		}
		if be != nil {
			s.retire(be, deadline)
		}
		gen := s.srv.routeGen.Load() // before the route is read: see install
		target := s.target()
		if target == "" {
			continue
		}
		nb, err := s.connect(target)
		if err != nil {
			s.debug("backend dial failed", "backend_addr", target, "err", err)
			continue
		}
		if s.srv.routeGen.Load() != gen && !s.srv.valid(s, nb.addr) {
			// The route moved while this connection was made: its
			// target may be a deposed master, so nothing is sent on it
			// (seen in make chaos: a session dialed the old master, the
			// dial completed after the route changed, and its writes
			// went there for 1.5 s).
			s.debug("route changed during the dial: connection dropped", "backend_addr", target)
			s.drop(nb)
			continue
		}
		s.install(nb, gen)
	}
}

// drop closes a connection that was never installed.
func (s *session) drop(nb *backendConn) {
	if nb.mux != nil {
		nb.mux.detach(nb)
		return
	}
	_ = nb.conn.Close()
}

// connect opens a backend connection to addr: a place on a shared one
// (proxy.multiplex) unless the session needs its own.
func (s *session) connect(addr string) (*backendConn, error) {
	s.mu.Lock()
	shared := s.srv.cfg.Multiplex && !s.ownConn
	proto := s.muxProto
	s.mu.Unlock()
	if shared {
		be, err := s.srv.attach(s, addr, proto)
		if err == nil || s.srv.needAuth || !refusedAuth(err) {
			return be, err
		}
		// Redis wants authentication first (HELLO 3 without it is
		// refused): the session's own connection, where its HELLO gets
		// Redis's answer and its AUTH can follow.
		s.mu.Lock()
		s.needOwnLocked("HELLO")
		s.mu.Unlock()
	}
	return s.srv.dial(addr)
}

// needOwnLocked is called before forwarding a command a shared connection
// cannot carry: the session moves to a dedicated connection (after the
// replies to what it sent on the shared one), for good.
func (s *session) needOwnLocked(cmd string) {
	if !s.ownConn && s.srv.cfg.Multiplex {
		s.ownConn = true
		s.l.moved.Add(1)
		s.debug("session takes its own backend connection", "command", cmd)
	}
}

// Head-of-line bounds on a shared connection: Redis answers a connection's
// commands in order, so every reply a session is owed there delays the
// other sessions' commands sent after it. A session with more than
// muxMaxDue replies due, or whose client left more than muxMaxUnread
// bytes of replies unread (it does not keep up: what it sends next would
// queue behind the same), moves to a connection of its own, as after an
// `own` command: after the replies to what it sent on the shared one, so
// its order is kept. P16 pipelines and ordinary replies stay shared.
const (
	muxMaxDue    = 128
	muxMaxUnread = 1 << 20
)

// muxRoomLocked is how many commands the next batch may send on the
// session's shared connection before it moves (muxMaxDue); no room when
// its client does not read (muxMaxUnread).
func (s *session) muxRoomLocked() int {
	be := s.be
	if be == nil || be.mux == nil || s.ownConn {
		return math.MaxInt // a batch that gets a shared connection is read again (hold)
	}
	if int64(len(s.pend))+s.outBacklog.Load() > muxMaxUnread {
		return 0
	}
	return max(0, muxMaxDue-int(be.due.Load()))
}

// deepLocked moves the session to its own connection: it reached the
// head-of-line bound of its shared one (muxRoomLocked).
func (s *session) deepLocked() {
	if s.be != nil && s.be.mux != nil && !s.ownConn {
		s.srv.movedDeep.Add(1)
		s.needOwnLocked("(deep pipeline or unread replies)")
	}
	s.muxRoom = math.MaxInt
}

// target is where to connect now, "" to wait for a route change.
func (s *session) target() string {
	t := s.srv.target(s)
	s.mu.Lock()
	defer s.mu.Unlock()
	if t != "" && t == s.demotedAddr && s.srv.routeGen.Load() == s.demotedGen {
		return ""
	}
	return t
}

// retire closes a backend connection after its in-flight replies arrived
// (or deadline passed: the rest get ReplyLost*). A shared place whose
// server is still in the route (a move to its own connection, e.g. after
// a deep pipeline of large replies) waits on while its replies keep
// coming (some every retireProgress): they are not lost, only slow.
func (s *session) retire(be *backendConn, deadline time.Time) {
	due, extend, extended := int64(0), !deadline.IsZero(), false
	for {
		if extend && be.mux != nil && be.moveHeld.Load() {
			s.unhold(be) // they go to the next connection (install)
		}
		s.mu.Lock()
		busy := s.be == be && s.inflight > 0 && !be.dead
		s.drainWait = busy
		s.mu.Unlock()
		if !busy || s.isClosed() {
			break
		}
		if !time.Now().Before(deadline) {
			now := be.due.Load()
			if !extend || be.mux == nil || (extended && now >= due) || !s.srv.valid(s, be.addr) {
				break
			}
			due, deadline, extended = now, time.Now().Add(retireProgress), true
		}
		s.sleep(deadline)
	}
	s.mu.Lock()
	be.retiring = true
	s.drainWait = false
	s.mu.Unlock()
	if be.mux != nil {
		be.mux.detach(be)
		s.lose(be, errMuxClosed) // what is still due is lost
	} else {
		_ = be.conn.SetDeadline(aLongTimeAgo)
		<-be.done
		_ = be.conn.Close()
	}
	s.mu.Lock()
	if s.be == be {
		s.be = nil
	}
	s.mu.Unlock()
	s.curBE.CompareAndSwap(be, nil)
	be.stats.sessions.Add(-1)
	be.stats.commands.Add(be.cmds.Swap(0))
}

// retireProgress: a shared place being left keeps waiting for its replies
// while one arrives at least this often (retire).
const retireProgress = time.Second

// install makes nb the session's backend connection: it sends the
// replayed state, then the commands waiting to be sent again, and starts
// the reader.
//
// gen is the route generation loaded before the target was read: the
// session has checked nb against that route, not against one that came
// while it dialed. Taking the generation current at install instead left
// a session that dialed the old master as the route changed to "" (writes
// paused for a planned failover) sending to it without checking the
// route again until it changed once more: the old master acknowledged
// writes after the failover had measured its replication offset, and
// they were lost at the switch (issue 13, TestPlannedFailoverUnderTraffic:
// 32 of 128 at load 25; TestDialAcrossWritePause).
func (s *session) install(nb *backendConn, gen uint64) {
	s.mu.Lock()
	s.gen++
	nb.gen = s.gen
	var rp []replayEntry
	shared := nb.mux != nil // set up when dialed: the session has no other state (ownConn)
	if shared {
		s.helloAfterAuth = false
	} else {
		auth := s.clientAuth()
		if s.srv.needAuth {
			auth = s.srv.backendAuth
		}
		s.sendLog, rp = s.replay(s.sendLog, auth)
	}
	if n := s.resend(nb.gen); n > 0 {
		// held on a stalled shared connection: never sent, not counted
		moved := min(n, s.heldMoved)
		s.l.resent.Add(int64(n - moved))
	}
	s.heldMoved = 0
	if !shared {
		s.sendLog = append(s.sendLog, s.replayTail()...)
	}
	nb.replay = rp
	s.be, s.wbe = nb, nb
	s.demoted, s.forceMove = false, false
	s.routeGen = gen
	s.mu.Unlock()
	s.curBE.Store(nb)
	nb.stats.sessions.Add(1)
	if !shared {
		nb.owner = s
		if s.isClosed() {
			_ = nb.conn.SetDeadline(aLongTimeAgo)
		}
		s.bwg.Add(1)
		go func() {
			defer s.bwg.Done()
			defer close(nb.done)
			s.backendLoop(nb)
		}()
	}
	s.flushLog()
	s.debug("backend connected", "backend_addr", nb.addr, "replayed", len(rp))
}

var (
	cmdHello3      = appendCommandStrings(nil, "HELLO", "3")
	cmdMultiRaw    = appendCommandStrings(nil, "MULTI")
	cmdMonitorRaw  = appendCommandStrings(nil, "MONITOR")
	cmdDiscardRaw  = appendCommandStrings(nil, "DISCARD")
	cmdReplyOffRaw = appendCommandStrings(nil, "CLIENT", "REPLY", "OFF")
)

// failUnsent answers the commands that waited for a master in vain.
func (s *session) failUnsent() {
	reply := []byte(replyMasterDown(s.l.readonly, s.srv.holdTimeout()))
	s.mu.Lock()
	s.errs.Add(int64(s.pipeline.failUnsent(reply)))
	s.heldMoved = 0
	s.mu.Unlock()
	s.emitLocals()
}

// flushLog writes the bytes not yet sent to the backend.
func (s *session) flushLog() {
	at := s.logSent
	p, n := s.unsentBytes()
	if len(p) == 0 || s.wbe == nil {
		return
	}
	if s.wbe.mux != nil {
		s.wbe.mux.send(s.wbe, p, n, at)
		return
	}
	if _, err := s.wbe.conn.Write(p); err != nil {
		// the reader sees the broken connection and answers what was in flight
		_ = s.wbe.conn.SetDeadline(aLongTimeAgo)
	}
}

// flush ends a batch: one write to the backend, then local replies.
func (s *session) flush() {
	s.flushLog()
	if s.batchCmds > 0 && s.wbe != nil {
		s.wbe.cmds.Add(s.batchCmds)
	}
	s.batchCmds = 0
	if s.localsReady {
		s.localsReady = false
		s.emitLocals()
	}
}

// emitLocals writes the proxy's own replies that reached the head of the
// FIFO, without waiting for the client (output.go).
func (s *session) emitLocals() { s.emit(s) }

// releaseOut releases wmu without waiting for the client (output.go).
func (s *session) releaseOut() { s.release(s) }

// unlockOut releases wmu, writing what became due (output.go).
func (s *session) unlockOut(block bool) { s.unlock(s, block) }

// the session as its output's owner (outputOwner)

func (s *session) Lock()   { s.mu.Lock() }
func (s *session) Unlock() { s.mu.Unlock() }

func (s *session) readyLocked(collect bool) bool {
	if collect {
		s.emitReadyLocked()
	}
	s.finNext = s.drainFin && s.q.len() == 0 && s.inflight == 0 && s.unsent == 0
	return s.closing
}

// closeWrite sends the client a FIN with the last reply of a drain
// (drain.go), before the client may send its next command: before the
// write it corks the socket, after it it shuts the write side down.
func (s *session) closeWrite(before bool) {
	if before {
		corkClient(s.client)
		return
	}
	if cw, ok := s.client.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
}

func (s *session) writeClient(p []byte, block bool) (n int, err error) {
	if block {
		n, err = s.client.Write(p)
	} else {
		n, err = tryWrite(s.client, p)
	}
	s.bytesOut.Add(int64(n))
	if err != nil {
		s.mu.Lock()
		s.closing = true
		s.mu.Unlock()
		s.shutdown()
	}
	return n, err
}

func (s *session) spawn(f func()) {
	s.bwg.Add(1)
	go func() {
		defer s.bwg.Done()
		f()
	}()
}

// emitReadyLocked writes the answers at the head of the FIFO that are
// ready (wmu and mu held).
func (s *session) emitReadyLocked() {
	for s.q.len() > 0 {
		e := s.q.at(s.q.head)
		if e.local == nil {
			return
		}
		s.pend = append(s.pend, e.local...)
		if e.flags&fCloseAfter != 0 {
			s.closing = true
		}
		s.q.pop()
	}
}

// localLocked queues a reply the proxy makes itself.
func (s *session) localLocked(reply string, flags uint8, silent bool) {
	if reply != "" && reply[0] == '-' {
		s.errs.Add(1)
	}
	if silent {
		if flags&fCloseAfter == 0 {
			return
		}
		reply = ""
	}
	s.q.push(entry{local: []byte(reply), flags: flags, start: -1, end: -1})
	s.localsReady = true
}

// processInput handles the complete commands in the read buffer.
func (s *session) processInput() action {
	if s.quitting {
		return actClose
	}
	s.mu.Lock()
	s.compact()
	s.muxRoom = s.muxRoomLocked()
	act := s.inputBoundsLocked()
	var n int64
	run := s.srv.handingOver()
	draining, served := run != nil && run.drain, false
	for act == actRead {
		raw, inline, err := s.rr.peek(s.srv.needAuth && !s.authed)
		if err != nil {
			act = s.closeLocked(closedProtocol, "-ERR "+err.Error()+"\r\n")
			break
		}
		if raw == nil {
			break
		}
		if !s.authed && n >= unauthPipeline {
			act = s.unauthPipelineLocked()
			break
		}
		if draining && (inline || !setupCommand(s.rr.name(raw))) {
			served = true
		}
		a := s.commandLocked(raw, inline)
		if a == actHold {
			act = actHold
			break
		}
		s.rr.consume(len(raw))
		n++
		if a == actClose {
			act = actClose
			break
		}
	}
	if draining && act == actRead {
		// a clean stop (drain.go): a batch that ends at a command boundary
		// outside a transaction is the session's last, its last reply
		// carries the FIN; set before the batch is sent
		if s.rr.buffered() || s.inMulti || s.watching {
			s.drainFin = false
		} else if served {
			s.drainFin, s.drainServed = true, true
		}
		s.drainStop = s.drainFin
	}
	s.mu.Unlock()
	s.commands.Add(n)
	s.flush()
	return act
}

// commandLocked handles one command: answers it here, or queues it for
// the backend (actHold when there is no usable backend yet).
func (s *session) commandLocked(raw []byte, inline bool) action {
	if inline && isHTTPRequest(raw) || !inline && isHTTPGuardName(s.rr.name(raw)) {
		return s.refuseHTTPLocked()
	}
	if s.replayFail != nil {
		s.localLocked(string(s.replayFail), fCloseAfter, false)
		s.quitting = true
		return actClose
	}
	if !inline && s.authed {
		if act, done := s.plainLocked(raw); done {
			return act
		}
	}
	args, act, ok := s.parseLocked(&raw, inline)
	if !ok {
		return act
	}
	next, v := s.connState.command(s.srv.cmds.resolve(args), args, len(raw), s.srv.cmdEnv())
	v = s.authResultLocked(v)
	if v.local {
		s.connState = next
		if v.kind == cmdRefused {
			s.srv.refused.note(s, v.label)
		}
		var flags uint8
		if v.closeAfter {
			flags = fCloseAfter
			s.quitting = true
		}
		s.localLocked(v.reply, flags, v.silent)
		if v.closeAfter {
			return actClose
		}
		return actRead
	}
	if v.own {
		s.needOwnLocked(logCommand(v.kind, args))
	}
	if v.muxProto != 0 {
		s.muxProto = v.muxProto
	}
	if s.logCmds >= s.muxRoom {
		s.deepLocked()
	}
	if !s.sendableLocked() {
		if !s.holdExpired {
			return actHold
		}
		silent := s.silent()
		s.connState = v.holdFail
		s.localLocked(replyMasterDown(s.l.readonly, s.srv.holdTimeout()), 0, silent)
		return actRead
	}
	s.connState = next
	if v.fwd != nil {
		raw = v.fwd
	}
	s.sendLocked(raw, v)
	return actRead
}

// plainLocked is the fast path: a plain command needs no parsing beyond
// the framing requestReader did (the same checks as redcon's) and no
// state: it is forwarded raw (done), or waits for a backend connection.
func (s *session) plainLocked(raw []byte) (act action, done bool) {
	spec := s.srv.cmds.lookup(s.rr.name(raw))
	if spec.kind != cmdPlain || spec.bySub || s.replyOff || s.skipNext {
		return 0, false
	}
	if spec.own || len(raw) > bigCommand {
		s.needOwnLocked(string(s.rr.name(raw)))
	}
	if s.logCmds >= s.muxRoom {
		s.deepLocked()
	}
	if !s.sendableLocked() {
		if !s.holdExpired {
			return actHold, true
		}
		return 0, false // the slow path answers MASTERDOWN
	}
	s.forwardPlainLocked(raw)
	return actRead, true
}

// parseLocked parses a command (an inline one is re-encoded as RESP in
// *raw); a malformed one is answered here and closes the session. ok
// false: nothing more to do with it (act says what next).
func (s *session) parseLocked(raw *[]byte, inline bool) (args [][]byte, act action, ok bool) {
	cmd, err := redcon.Parse(*raw)
	if inline && (err != nil || len(cmd.Args) == 0) && len(bytes.TrimSpace(*raw)) == 0 {
		return nil, actRead, false // empty line, ignored as by Redis
	}
	if err != nil {
		msg := err.Error()
		if !strings.HasPrefix(msg, "Protocol error") {
			msg = "Protocol error: " + msg
		}
		s.localLocked("-ERR "+msg+"\r\n", fCloseAfter, false)
		s.quitting = true
		return nil, actClose, false
	}
	if len(cmd.Args) == 0 {
		return nil, actRead, false
	}
	if inline {
		*raw = cmd.Raw // redcon encodes inline commands as RESP
	}
	return cmd.Args, actRead, true
}

// sendLocked queues a command the connection state let through (v) for
// the backend.
func (s *session) sendLocked(raw []byte, v verdict) {
	e := entry{n: v.n, kind: v.kind, flags: v.flags}
	if v.keepRaw && !v.silent {
		e.raw = append([]byte(nil), raw...)
	}
	if len(raw) > bigCommand {
		s.pushUnlogged(e, v.silent)
		s.wbe = s.be
		s.mu.Unlock()
		s.flushLog()
		if _, err := s.wbe.conn.Write(raw); err != nil {
			_ = s.wbe.conn.SetDeadline(aLongTimeAgo)
		}
		s.mu.Lock()
	} else {
		s.push(e, raw, v.silent)
		if v.hello {
			// HELLO 3 after the AUTH Redis wanted first (connState.replay)
			s.push(entry{n: 1, kind: cmdHello, flags: fHidden}, cmdHello3, false)
		}
		s.wbe = s.be
	}
	s.batchCmds++
	if v.fresh {
		s.forceMove = true // a fresh connection: RESET also dropped the backend's AUTH
	}
}

// forwardPlainLocked queues a plain command for the backend (one reply;
// see pipeline.pushPlain for runs).
func (s *session) forwardPlainLocked(raw []byte) {
	var flags uint8
	if s.inMulti {
		flags = fInMulti
	}
	if len(raw) <= bigCommand {
		s.pushPlain(raw, flags)
		s.wbe = s.be
		s.batchCmds++
		return
	}
	s.pushUnlogged(entry{n: 1, flags: flags}, false)
	s.wbe = s.be
	s.batchCmds++
	s.mu.Unlock()
	s.flushLog()
	if _, err := s.wbe.conn.Write(raw); err != nil {
		_ = s.wbe.conn.SetDeadline(aLongTimeAgo)
	}
	s.mu.Lock()
}

// commandLen is the length of the RESP multibulk command at the start of
// b (a command the session framed and forwarded: well formed).
func commandLen(b []byte) int {
	i := bytes.IndexByte(b, '\n') + 1
	n, _ := parseLen(b[1 : i-2])
	for ; n > 0; n-- {
		j := i + bytes.IndexByte(b[i:], '\n') + 1
		size, _ := parseLen(b[i+1 : j-2])
		i = j + size + 2
	}
	return i
}

func (e *entry) flagsInMulti() bool { return e.flags&fInMulti != 0 }

// splitHelloAuth removes "AUTH user pass" from a HELLO (proxy password
// mode: the proxy checks it, Redis must not see it).
func splitHelloAuth(args [][]byte) (fwd []byte, creds [][]byte, ok bool) {
	out := [][]byte{args[0]}
	if len(args) > 1 {
		out = append(out, args[1])
	}
	for i := 2; i < len(args); {
		if equalFold(args[i], "auth") {
			if i+2 >= len(args) {
				return nil, nil, false
			}
			creds = [][]byte{args[i+1], args[i+2]}
			i += 3
			continue
		}
		out = append(out, args[i])
		i++
	}
	return appendCommand(nil, out...), creds, true
}

// cmdEnv is what the connection state needs to know of the configuration.
func (srv *Server) cmdEnv() cmdEnv {
	return cmdEnv{password: srv.cfg.Password, multiplex: srv.cfg.Multiplex}
}
