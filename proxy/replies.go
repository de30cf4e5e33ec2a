package proxy

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
)

// backendLoop reads replies from be until it fails or is retired.
func (s *session) backendLoop(be *backendConn) {
	err := readLoop(be.conn, be.space, func(n int) bool { return s.onBackendData(be, n) }, nil)
	s.backendGone(be, err)
}

// onBackendData handles one read from the backend: every reply complete
// in the buffer goes to the client buffer, then one write to the client.
func (s *session) onBackendData(be *backendConn, n int) bool {
	be.end += n
	s.wmu.Lock()
	s.mu.Lock()
	ok := s.framesLocked(be)
	s.emitReadyLocked()
	s.takePendLocked()
	wake := be.kickC || (s.drainWait && s.inflight == 0) || s.closing || !ok
	be.kickC = false
	if !ok && s.replayFail == nil {
		s.closing = true
	}
	s.mu.Unlock()
	s.unlockOut(true)
	if wake {
		s.kick()
	}
	return ok
}

func (s *session) framesLocked(be *backendConn) bool {
	fs, scan, ok := s.repliesLocked(be, be.buf[:be.end], be.fs, be.scan)
	be.fs, be.scan = fs, scan
	if !ok {
		return false
	}
	switch {
	case be.fs == be.end:
		be.fs, be.scan, be.end = 0, 0, 0
	case be.fs == 0 && be.end == len(be.buf):
		// a reply larger than the buffer: decide on its head, pass the rest through
		fwd, ok := s.replyLocked(be, be.buf[:be.end], false)
		if !ok {
			return false
		}
		if fwd {
			s.pend = append(s.pend, be.buf[:be.end]...)
		}
		be.streaming, be.streamFwd = true, fwd
		be.fs, be.scan, be.end = 0, 0, 0
	case len(be.buf)-be.end < 4096:
		n := copy(be.buf, be.buf[be.fs:be.end])
		be.scan -= be.fs
		be.end = n
		be.fs = 0
	}
	return true
}

// repliesLocked frames the replies in b from offset fs (the framer,
// be.framer, has scanned up to scan), matches each complete one with what
// the session expects and appends the ones for the client to pend. It
// returns where the first incomplete reply starts and how far it was
// scanned. A reply being streamed (be.streaming) is passed through.
func (s *session) repliesLocked(be *backendConn, b []byte, fs, scan int) (int, int, bool) {
	for scan < len(b) {
		if be.dead {
			return len(b), len(b), true // deposed: what it still sends is dropped
		}
		if fs == scan && !be.streaming && len(be.replay) == 0 && !be.discarding && !be.framer.mid() {
			if k := s.plainRepliesLocked(be, b[scan:]); k > 0 {
				scan += k
				fs = scan
				continue
			}
		}
		k, done, err := be.framer.feed(b[scan:])
		if err != nil {
			s.logger().Warn("bad reply from redis; closing session", "backend_addr", be.addr, "err", err)
			return fs, scan, false
		}
		if be.streaming {
			if be.streamFwd {
				s.pend = append(s.pend, b[scan:scan+k]...)
			}
			scan += k
			fs = scan
			if done {
				be.streaming = false
			}
			continue
		}
		scan += k
		if !done {
			break
		}
		frame := b[fs:scan]
		fwd, ok := s.replyLocked(be, frame, true)
		if !ok {
			return fs, scan, false
		}
		if fwd {
			s.pend = append(s.pend, frame...)
		}
		fs = scan
	}
	return fs, scan, true
}

// plainRepliesLocked is the fast path of framesLocked: when the head of
// the FIFO is plain commands (one reply each, nothing to look at), the
// simple replies complete in the buffer are counted and copied to the
// client in one piece. It returns how many bytes of b it took; anything else
// (aggregates, pushes, -READONLY/-UNBLOCKED, a partial reply, a head that
// is not plain) is left to the general path.
func (s *session) plainRepliesLocked(be *backendConn, b []byte) int {
	if s.q.len() == 0 || s.srv.routeGen.Load() != s.routeGen {
		return 0 // the route changed: replyLocked checks be.addr (deposedLocked)
	}
	e := s.q.at(s.q.head)
	if e.kind != cmdPlain || e.local != nil || e.gen != be.gen || e.raw != nil || e.n <= 0 ||
		e.flags&(fExecNull|fExecMoved|fExecDirty|fHideSecrets) != 0 {
		return 0
	}
	i, k := 0, int32(0)
	for k < e.n && i < len(b) {
		j := simpleReplyLen(b[i:])
		if j == 0 {
			break
		}
		i += j
		k++
	}
	if k == 0 {
		return 0
	}
	s.pend = append(s.pend, b[:i]...)
	if e.n -= k; e.n == 0 {
		s.pop()
	}
	return i
}

// simpleReplyLen is the length of the complete simple reply (status,
// integer, null, double, boolean, big number, non-READONLY/UNBLOCKED
// error, bulk string) at the start of b; 0 for anything else, including
// a reply not complete yet or malformed (the general framer decides).
func simpleReplyLen(b []byte) int {
	switch b[0] {
	case '-':
		if len(b) < len("-UNBLOCKED ") || bytes.HasPrefix(b, []byte("-READONLY ")) || bytes.HasPrefix(b, []byte("-UNBLOCKED ")) {
			return 0
		}
		fallthrough
	case '+', ':', '_', ',', '#', '(':
		return bytes.IndexByte(b, '\n') + 1
	case '$':
		n, i := 0, 1
		if len(b) >= 5 && b[1] == '-' {
			if b[2] == '1' && b[3] == '\r' && b[4] == '\n' {
				return 5
			}
			return 0
		}
		for ; i < len(b) && i <= 10; i++ {
			c := b[i]
			if c < '0' || c > '9' {
				break
			}
			n = n*10 + int(c-'0')
		}
		if i == 1 || i+1 >= len(b) || b[i] != '\r' || b[i+1] != '\n' {
			return 0
		}
		end := i + 2 + n + 2
		if end > len(b) {
			return 0
		}
		return end
	}
	return 0
}

// replyLocked matches one reply (or, when !complete, the head of a big
// one) with what the session expects, updates the session and says
// whether the reply goes to the client.
func (s *session) replyLocked(be *backendConn, frame []byte, complete bool) (fwd, ok bool) {
	isErr := frame[0] == '-' || frame[0] == '!'
	if len(be.replay) > 0 {
		return s.replayReplyLocked(be, frame, isErr)
	}
	s.emitReadyLocked()
	var e *entry
	if s.q.len() > 0 {
		e = s.q.at(s.q.head)
	}
	switch {
	case s.outOfBand(frame, e):
		return true, true
	case be.discarding:
		return false, s.discardLocked(be)
	case e == nil || e.local != nil || e.gen != be.gen:
		s.logger().Warn("reply with no command waiting for it; closing session", "backend_addr", be.addr)
		return false, false
	case isPubsubKind(e.kind) && !isErr:
		if e.n < 0 {
			e.n = s.unsubscribeAll(e.kind)
		}
		s.confirmed(frame)
		if e.n--; e.n <= 0 {
			s.pop()
		}
		return true, true
	}
	if isErr && complete && !s.l.readonly && demotedReply(frame) && s.demotedLocked(be) {
		return false, true // sent again to the new master
	}
	if !s.l.readonly && s.deposedLocked(be) {
		return false, true // answered outcome unknown
	}
	e = s.q.at(s.q.head) // split from its run by demotedLocked
	if (e.kind == cmdAuth || e.kind == cmdHello) && e.flags&fHidden == 0 && complete &&
		!s.srv.needAuth && s.passedAuthLocked(e.kind, frame) {
		// too many wrong passwords in a row: Redis's answer, then ours
		s.pend = append(append(s.pend, frame...), ReplyAuthFailures...)
		s.pop()
		s.closing = true
		return false, true
	}
	if e.flags&(fHidden|fExecNull|fExecMoved|fExecDirty) != 0 {
		return false, s.proxyAnswerLocked(e, frame)
	}
	if e.flags&fHideSecrets != 0 && !isErr {
		if complete {
			s.pend = hideConfigSecrets(s.pend, frame)
		} else {
			// too big to look at whole: the client gets an error, the
			// rest of the reply is dropped as it streams
			s.pend = append(s.pend, replyConfigTooBig...)
		}
		s.pop()
		return false, true
	}
	if !isErr {
		if e.raw != nil {
			s.accepted(e.kind, e.raw, s.srv.needAuth)
		}
		if e.kind == cmdAdmin {
			// a password or ACL user changed: shared connections keep the
			// authentication they were opened with; retired before the
			// client sees the answer, so a client connecting after it does
			// not inherit theirs
			s.srv.retireMux(be.addr, "authentication changed through the proxy")
		}
	}
	if e.n--; e.n > 0 && e.cnt > 1 {
		return true, true // more replies for this run of plain commands
	}
	s.pop()
	return true, true
}

// replayReplyLocked takes the reply to a replayed command.
func (s *session) replayReplyLocked(be *backendConn, frame []byte, isErr bool) (fwd, ok bool) {
	if s.outOfBand(frame, nil) {
		return true, true
	}
	r := &be.replay[0]
	if !s.replayAnswered(r.kind, frame) {
		s.logger().Warn("replaying session state failed; closing session", "backend_addr", be.addr, "reply", string(firstLine(frame)))
		s.emitReadyLocked()
		if isErr && s.q.len() == 0 && !s.subscribedLocked() && !s.monitoring {
			// nothing waits yet, but a command may be on its way: the
			// next one gets Redis's reason (session.replayFail); a
			// subscriber sends none, so it is closed at once
			s.replayFail = append([]byte(nil), frame...)
			return false, false
		}
		if s.q.len() > 0 && isErr {
			// the client waits for an answer: Redis's own reason (e.g.
			// WRONGPASS for a user the new master lacks) is the answer to
			// its first command, then the connection closes
			s.explode(&be.discardSeq)
			if e := s.q.at(s.q.head); e.local == nil && e.gen == be.gen {
				s.pend = append(s.pend, frame...)
				s.pop()
			}
		}
		s.closing = true
		return false, false
	}
	if isErr {
		r.n = 0 // refused, and the state says how to go on
	}
	if r.n--; r.n <= 0 {
		be.replay = be.replay[1:]
	}
	return false, true
}

// discardLocked drops a reply from a demoted master; its command is sent
// again.
func (s *session) discardLocked(be *backendConn) bool {
	if !s.discard(be.gen, &be.discardSeq) {
		s.logger().Warn("reply with no command waiting for it; closing session", "backend_addr", be.addr)
		return false
	}
	return true
}

// demotedReply: the server is no longer master, and did not run the
// command: -READONLY, or the -UNBLOCKED Redis gives blocked clients when
// it becomes a replica. Every other error, -UNBLOCKED from CLIENT UNBLOCK
// or a deleted stream included, is the client's answer.
func demotedReply(frame []byte) bool {
	return bytes.HasPrefix(frame, []byte("-READONLY ")) || bytes.HasPrefix(frame, unblockedDemoted)
}

// unblockedDemoted is how Redis (disconnectAllBlockedClients) ends the
// blocked commands of a master turned replica.
var unblockedDemoted = []byte("-UNBLOCKED force unblock from blocking operation, instance state changed")

// demotedLocked follows a demoted master's answer to the head command:
// no new connection to be.addr until the route changes, and the command
// and those after it are sent again to the new master when they all may
// (true: the reply is dropped).
func (s *session) demotedLocked(be *backendConn) bool {
	s.explode(&be.discardSeq)
	s.demoted = true
	s.demotedAddr, s.demotedGen = be.addr, s.srv.routeGen.Load()
	be.kickC = true
	seq, ok := s.startRetry(be.gen)
	if ok {
		be.discarding, be.discardSeq = true, seq
	}
	return ok
}

// deposedLocked: a reply came from a master after the route named
// another one, or named it Replaced. A write it ran after it was deposed
// is lost when it rejoins as a replica (a SIGSTOPped master continued
// after Sentinel's failover runs the commands queued on its sockets and
// answers them), so its answers must not reach clients as success: every command still owed
// a reply on be is answered "outcome unknown" (never sent again: it may
// have run), and what be sends later is dropped. -READONLY is not a reply
// here (demotedLocked resends those). A route with no master ("": writes
// paused for a planned failover, or none known) still takes the replies:
// the planned failover waits for them, then for the replicas to have
// them, unless a route since the backend was checked named another
// master or be.addr as Replaced (Server.deposedSince). It returns false,
// doing nothing, unless the route names or named another master, or
// be.addr as Replaced.
func (s *session) deposedLocked(be *backendConn) bool {
	if s.srv.routeGen.Load() == s.routeGen {
		return false
	}
	if r := s.srv.route.Load(); r == nil || r.Replaced != be.addr && (r.Master == "" || r.Master == be.addr) {
		// the route names no other master now; one since the backend was
		// checked (s.routeGen) deposed it all the same
		if !s.srv.deposedSince(s.routeGen, be.addr) {
			return false
		}
	}
	n := s.pipeline.lose(be.gen, false, []byte(ReplyLostMaster), &be.discardSeq, nil)
	s.errs.Add(int64(n))
	be.dead = true
	if s.be == be {
		s.inflight = 0
	}
	be.kickC = true // the session moves on (retire stops waiting)
	if be.conn != nil {
		_ = be.conn.SetReadDeadline(aLongTimeAgo) // its reader ends; nothing more is read
	}
	s.debug("reply from a master the route no longer names; commands in flight answered outcome unknown",
		"backend_addr", be.addr, "in_flight", n)
	return true
}

// proxyAnswerLocked handles the reply to a command the proxy sent for its
// own reasons: a hidden HELLO 3 (dropped), an EXEC sent as DISCARD (the
// proxy's answer replaces +OK).
func (s *session) proxyAnswerLocked(e *entry, frame []byte) bool {
	switch {
	case e.flags&fHidden != 0:
		if frame[0] == '-' || frame[0] == '!' {
			s.helloAfterAuth = true // the AUTH before it failed: after the next one
		}
	case frame[0] != '+':
		// DISCARD failed: Redis's error goes to the client
		s.pend = append(s.pend, frame...)
	case e.flags&fExecNull != 0 && s.proto == 3:
		s.pend = append(s.pend, "_\r\n"...)
	case e.flags&fExecNull != 0:
		s.pend = append(s.pend, "*-1\r\n"...)
	case e.flags&fExecMoved != 0:
		s.pend = append(s.pend, ReplyExecAbortMoved...)
	default:
		s.pend = append(s.pend, ReplyExecAbortDirty...)
	}
	s.pop()
	return true
}

// outOfBand says whether a reply belongs to no command: a pub/sub message,
// or a RESP3 push that is not a confirmation the head entry waits for.
func (s *session) outOfBand(frame []byte, head *entry) bool {
	switch frame[0] {
	case '+':
		return s.monitoring && monitorLine(frame)
	case '>':
		k := pubsubFrame(frame)
		if k == psNone || k == psMessage {
			return true
		}
		return head != nil && !isPubsubKind(head.kind) // a confirmation for a replayed subscription is handled by the caller
	case '*':
		return s.proto == 2 && s.subscribedLocked() && pubsubFrame(frame) == psMessage
	}
	return false
}

// killedByRedis says whether Redis closed the session's own connection on
// purpose (CLIENT KILL, a deleted ACL user, timeout) rather than by
// going away: the connection ended cleanly (EOF) and the server still
// answers a PING on a new one. A master being shut down closes its
// listening socket before its clients' connections, so it is not taken
// for a kill.
func (s *session) killedByRedis(be *backendConn, err error) bool {
	s.mu.Lock()
	retiring := be.retiring || s.closing
	s.mu.Unlock()
	if be.mux != nil || retiring || !errors.Is(err, io.EOF) {
		return false
	}
	c, err := net.DialTimeout("tcp", be.addr, s.srv.cfg.DialTimeout)
	if err != nil {
		return false
	}
	defer c.Close()
	if pingCheck(c, s.srv.cfg.DialTimeout) != nil {
		return false
	}
	s.logger().Info("redis closed the session's backend connection while it still answers (CLIENT KILL?); closing the client as a direct connection would be",
		"backend_addr", be.addr)
	return true
}

// backendGone runs when the reader stops: commands still in flight get
// ReplyLost* (or wait for a resend after -READONLY).
func (s *session) backendGone(be *backendConn, err error) {
	killed := s.killedByRedis(be, err)
	shared := be.mux != nil
	if !shared {
		s.wmu.Lock()
	}
	s.mu.Lock()
	if killed {
		// as on a direct connection: the client's connection ends too
		// (CLIENT KILL must reach the client; no redial, no replay)
		s.closing = true
	}
	be.dead = true
	retiring := be.retiring
	lost := []byte(ReplyLostMaster)
	if s.l.readonly {
		lost = []byte(ReplyLostReplica)
	}
	var reread func([]byte) bool
	if be.mux != nil && !retiring && !errors.Is(err, errMuxClosed) && !errors.Is(err, net.ErrClosed) {
		// a shared connection died under its sessions (CLIENT KILL TYPE
		// normal, a master restarted): reads go again on a fresh one
		reread = rereadable
	}
	n := s.pipeline.lose(be.gen, be.discarding, lost, &be.discardSeq, reread)
	s.errs.Add(int64(n))
	if s.be == be {
		s.inflight = 0
	}
	if be.streaming && be.streamFwd {
		s.closing = true // the client has part of a reply
	}
	s.emitReadyLocked()
	if shared {
		// Never wait for wmu here: its holder may be writing to a client
		// that does not read, and this runs on the shared connection's
		// reader or on the session goroutine moving to a fresh connection
		// (which would then stop reading that client: deadlock,
		// TestBigPipelineNoDeadlock). The answers go out as replies do.
		s.localsWaiting = true
	} else {
		s.takePendLocked()
	}
	s.mu.Unlock()
	if shared {
		s.deliver(s)
	} else {
		s.unlockOut(true)
	}
	if !retiring || n > 0 {
		be.stats.errors.Add(1)
		be.stats.lost.Store(true)
		if !errors.Is(err, io.EOF) && !errors.Is(err, os.ErrDeadlineExceeded) && !errors.Is(err, net.ErrClosed) {
			s.debug("backend connection lost", "backend_addr", be.addr, "err", err, "in_flight", n)
		} else {
			s.debug("backend connection closed", "backend_addr", be.addr, "in_flight", n)
		}
	}
	if !retiring {
		s.kick()
	}
}

func firstLine(b []byte) []byte {
	if i := bytes.IndexByte(b, '\r'); i >= 0 {
		b = b[:i]
	}
	if len(b) > 200 {
		b = b[:200]
	}
	return b
}
