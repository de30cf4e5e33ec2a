package proxy

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Replies sent before the proxy closes a client for one of the reasons
// below (Redis's shapes; best effort when the client does not read).
const (
	// ReplyHTTP answers an HTTP request sent to the RESP port.
	ReplyHTTP = "-ERR redhaven: this is a Redis port, not HTTP; closing the connection\r\n"
	// ReplyMaxClientsPerIP refuses a client beyond proxy.max_clients_per_ip.
	ReplyMaxClientsPerIP = "-ERR max number of clients per address reached\r\n"
	// ReplyAuthTimeout closes a client that did not authenticate within proxy.auth_timeout.
	ReplyAuthTimeout = "-ERR redhaven: authentication timeout; closing the connection\r\n"
	// ReplyAuthFailures closes a client after too many wrong passwords in a row.
	ReplyAuthFailures = "-ERR redhaven: too many authentication failures; closing the connection\r\n"
	// ReplyUnauthPipeline closes a client that pipelines beyond unauthPipeline commands before AUTH.
	ReplyUnauthPipeline = "-ERR redhaven: too many commands before AUTH; closing the connection\r\n"
	replyBufferMemory   = "-ERR redhaven: client buffers over proxy.max_buffer_memory; closing the connection\r\n"
	replyUnauthInput    = "-ERR Protocol error: too much input before AUTH\r\n"
	replyOutputLimit    = "-ERR redhaven: unread replies over the client output limit; closing the connection\r\n"
)

// maxAuthFailures: a connection with more wrong passwords in a row is closed.
const maxAuthFailures = 10

// closeReason says why the proxy closed a client (metric label).
type closeReason uint8

const (
	closedBufferMemory closeReason = iota
	closedOutputLimit
	closedInputLimit
	closedAuthTimeout
	closedIdleTimeout
	closedAuthFailures
	closedHTTP
	closedMaxClientsPerIP
	closedProtocol
	numCloseReasons
)

var closeReasonNames = [numCloseReasons]string{
	"buffer_memory", "output_limit", "input_limit", "auth_timeout", "idle_timeout",
	"auth_failures", "http", "max_clients_per_ip", "protocol_error",
}

func (r closeReason) String() string { return closeReasonNames[r] }

// guard is a session's part in the connection hygiene.
type guard struct {
	use       bufferUse
	connected time.Time
	authFails int // wrong passwords in a row (under mu)

	// the sweep's own (hygieneLoop)
	sweptIn    int64
	lastActive time.Time
}

func (g *guard) init(srv *Server) {
	g.use.budget = srv.budget
	g.connected = time.Now()
	g.lastActive = g.connected
}

// closeFor closes the client from outside its goroutine: the reply is
// written only if nothing else is being written (never into the middle of
// a reply), unread output is dropped.
func (s *session) closeFor(r closeReason, reply string) {
	if !s.closedFor.CompareAndSwap(false, true) {
		return // already being closed: counted once
	}
	s.srv.closed[r].Add(1)
	if reply != "" && s.tryLockOut(time.Millisecond) {
		if len(s.out) == 0 && !s.outPending.Load() {
			if n, _ := tryWrite(s.client, []byte(reply)); n > 0 {
				s.bytesOut.Add(int64(n))
			}
		}
		s.wmu.Unlock()
	}
	s.mu.Lock()
	s.closing = true
	s.pend = nil
	s.mu.Unlock()
	s.shutdown()
}

// tryLockOut takes wmu if it is free within d. Its holders keep it for
// microseconds (a session parking, a non-blocking write), so a closing
// reason is not lost to one of them; a client that does not read, whose
// writer waits on it with wmu held, is closed without the line.
func (s *session) tryLockOut(d time.Duration) bool {
	for deadline := time.Now().Add(d); ; time.Sleep(20 * time.Microsecond) {
		if s.wmu.TryLock() {
			return true
		}
		if !time.Now().Before(deadline) {
			return false
		}
	}
}

// closeLocked closes the client from its own goroutine (processInput,
// mu held): reply goes out after the replies before it.
func (s *session) closeLocked(r closeReason, reply string) action {
	s.srv.closed[r].Add(1)
	s.localLocked(reply, fCloseAfter, false)
	s.quitting = true
	return actClose
}

// inputBoundsLocked checks, once per batch of input, what the client made
// the proxy buffer; actRead when it may go on.
func (s *session) inputBoundsLocked() action {
	out := s.outputLocked()
	if s.authed {
		if out > s.srv.settings().ClientOutputLimit {
			return s.overOutputLocked(s.srv.settings().ClientOutputLimit)
		}
		return actRead
	}
	if out > unauthOutputMax {
		return s.overOutputLocked(unauthOutputMax)
	}
	if s.rr.end-s.rr.start > unauthInputMax {
		s.srv.rateLog.warn(s, "input_limit", "client sent too much before AUTH; closing it", "limit_bytes", unauthInputMax)
		return s.closeLocked(closedInputLimit, replyUnauthInput)
	}
	return actRead
}

// overOutputLocked closes a client that does not read its replies; what it
// did not read is dropped.
func (s *session) overOutputLocked(limit int64) action {
	s.srv.rateLog.warn(s, "output_limit", "client does not read its replies; closing it", "limit_bytes", limit)
	s.srv.closed[closedOutputLimit].Add(1)
	s.pend = nil
	s.closing = true
	s.quitting = true
	return actClose
}

// unauthPipelineLocked closes a client that sent more than
// unauthPipeline commands in one batch before it authenticated.
func (s *session) unauthPipelineLocked() action {
	s.srv.rateLog.warn(s, "input_limit", "client pipelines before AUTH; closing it", "max_commands", unauthPipeline)
	return s.closeLocked(closedInputLimit, ReplyUnauthPipeline)
}

// authResultLocked follows the answers to AUTH / HELLO AUTH the proxy gave
// (proxy.password mode): it counts and logs wrong passwords and closes the
// client after maxAuthFailures in a row.
func (s *session) authResultLocked(v verdict) verdict {
	if !v.local || (v.kind != cmdAuth && v.kind != cmdHello) {
		return v
	}
	if v.reply != ReplyWrongPass {
		if v.reply == "+OK\r\n" {
			s.guard.authFails = 0
		}
		return v
	}
	if s.authFailedLocked() {
		v.reply = ReplyWrongPass + ReplyAuthFailures
		v.silent = false
		v.closeAfter = true
	}
	return v
}

// passedAuthLocked follows Redis's answer to an AUTH or HELLO AUTH passed
// through (no proxy.password): a WRONGPASS counts as a wrong proxy
// password does. tooMany: close the client after this answer.
func (s *session) passedAuthLocked(kind cmdKind, frame []byte) (tooMany bool) {
	switch {
	case bytes.HasPrefix(frame, []byte("-WRONGPASS")):
		return s.authFailedLocked()
	case kind == cmdAuth && frame[0] != '-' && frame[0] != '!':
		s.guard.authFails = 0
	}
	return false
}

// authFailedLocked counts and logs a wrong password; true: more than
// maxAuthFailures in a row, the client is closed.
func (s *session) authFailedLocked() bool {
	s.guard.authFails++
	s.l.authFailures.Add(1)
	s.srv.rateLog.warn(s, "auth_failure:"+s.l.name, "wrong password from client", "failures_in_a_row", s.guard.authFails)
	if s.guard.authFails <= maxAuthFailures {
		return false
	}
	s.srv.closed[closedAuthFailures].Add(1)
	return true
}

// httpMethods start the request line of HTTP/1.x.
var httpMethods = []string{"get", "post", "put", "head", "delete", "options", "patch", "connect", "trace"}

// isHTTPRequest says whether an inline command is a line of an HTTP
// request (a browser or a scanner on the Redis port): a request line
// ("GET /x HTTP/1.1"), or, as Redis checks, "POST" or "Host:" first.
func isHTTPRequest(line []byte) bool {
	fields := bytes.Fields(line)
	if len(fields) == 0 {
		return false
	}
	if isHTTPGuardName(fields[0]) {
		return true
	}
	if len(fields) < 3 || !bytes.HasPrefix(fields[len(fields)-1], []byte("HTTP/")) {
		return false
	}
	for _, m := range httpMethods {
		if equalFold(fields[0], m) {
			return true
		}
	}
	return false
}

// isHTTPGuardName says whether a command name is one Redis takes for an
// HTTP request ("POST", "Host:"; it then closes the connection, which may
// be a shared one), in any form: a scanner may send it as RESP too. A
// length check first: most commands pay one comparison.
func isHTTPGuardName(name []byte) bool {
	switch len(name) {
	case 4:
		return equalFold(name, "post")
	case 5:
		return equalFold(name, "host:")
	}
	return false
}

// refuseHTTPLocked answers an HTTP request here and closes the client: it
// never reaches Redis, which would close the (maybe shared) connection.
func (s *session) refuseHTTPLocked() action {
	s.srv.rateLog.warn(s, "http", "HTTP request on the Redis port; closing the connection")
	return s.closeLocked(closedHTTP, ReplyHTTP)
}

// perIP counts the clients of each address (proxy.max_clients_per_ip).
type perIP struct {
	mu sync.Mutex
	n  map[netip.Addr]int
}

func clientIP(c net.Conn) netip.Addr {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		ip, _ := netip.AddrFromSlice(a.IP)
		return ip.Unmap()
	}
	return netip.Addr{}
}

// admit counts a new client of c's address, false when that address is at
// proxy.max_clients_per_ip. Clients are counted also without a limit, so
// that a reload that sets one finds the counts right.
func (srv *Server) admit(c net.Conn) bool {
	max := srv.settings().MaxClientsPerIP
	ip := clientIP(c)
	srv.perIP.mu.Lock()
	defer srv.perIP.mu.Unlock()
	if max > 0 && srv.perIP.n[ip] >= max {
		return false
	}
	srv.perIP.n[ip]++
	return true
}

// leave uncounts a client admit counted.
func (srv *Server) leave(c net.Conn) {
	ip := clientIP(c)
	srv.perIP.mu.Lock()
	if srv.perIP.n[ip]--; srv.perIP.n[ip] <= 0 {
		delete(srv.perIP.n, ip)
	}
	srv.perIP.mu.Unlock()
}

// refuse answers a client the accept loop will not serve and closes it.
func refuse(c net.Conn, reply string) {
	_ = c.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = c.Write([]byte(reply))
	_ = c.Close()
}

// hygieneLoop enforces, a few times a second, the limits no command
// triggers: the buffer budget, proxy.auth_timeout and
// proxy.client_idle_timeout.
func (srv *Server) hygieneLoop(ctx context.Context) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	var sessions []*session
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-srv.budget.hint:
		}
		srv.mu.Lock()
		sessions = sessions[:0]
		for s := range srv.sessions {
			sessions = append(sessions, s)
		}
		srv.mu.Unlock()
		srv.sweepBudget(sessions)
		srv.sweepTimeouts(sessions, time.Now())
		clear(sessions) // no pointers to ended sessions kept
	}
}

// sweepTimeouts closes the clients that did not authenticate within
// proxy.auth_timeout or sent nothing for proxy.client_idle_timeout (as
// Redis's timeout: not a subscriber, nor a client waiting for a reply).
func (srv *Server) sweepTimeouts(sessions []*session, now time.Time) {
	authTimeout := srv.settings().AuthTimeout
	if !srv.needAuth {
		authTimeout = 0
	}
	idle := srv.settings().ClientIdleTimeout
	if authTimeout <= 0 && idle <= 0 {
		return
	}
	for _, s := range sessions {
		g := &s.guard
		if in := s.bytesIn.Load(); in != g.sweptIn {
			g.sweptIn, g.lastActive = in, now
		}
		s.mu.Lock()
		authed := s.authed
		waiting := s.subscribedLocked() || s.q.len() > 0
		s.mu.Unlock()
		switch {
		case authTimeout > 0 && !authed && now.Sub(g.connected) > authTimeout:
			s.debug("client did not authenticate in time; closing it", "auth_timeout", authTimeout)
			s.closeFor(closedAuthTimeout, ReplyAuthTimeout)
		case idle > 0 && !waiting && now.Sub(g.lastActive) > idle:
			s.debug("client idle; closing it", "client_idle_timeout", idle)
			s.closeFor(closedIdleTimeout, "")
		}
	}
}

// rateLog writes at most one line per kind every rateLogEvery, with how
// many it left out: a flood of bad clients must not flood the log.
type rateLog struct {
	mu   sync.Mutex
	last map[string]time.Time
	left map[string]int
}

const rateLogEvery = 10 * time.Second

func (r *rateLog) warn(s *session, kind, msg string, args ...any) {
	now := time.Now()
	r.mu.Lock()
	if r.last == nil {
		r.last, r.left = map[string]time.Time{}, map[string]int{}
	}
	if now.Sub(r.last[kind]) < rateLogEvery {
		r.left[kind]++
		r.mu.Unlock()
		return
	}
	left := r.left[kind]
	r.last[kind], r.left[kind] = now, 0
	r.mu.Unlock()
	s.logger().Warn(msg, append(args, "similar_not_logged", left)...)
}

// closedCounts is the clients closed per reason (plain values).
func (srv *Server) closedCounts() map[string]int64 {
	m := make(map[string]int64, numCloseReasons)
	for r := closeReason(0); r < numCloseReasons; r++ {
		m[r.String()] = srv.closed[r].Load()
	}
	return m
}

// closedCounters is indexed by closeReason.
type closedCounters [numCloseReasons]atomic.Int64
