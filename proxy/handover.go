package proxy

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Hand-over: a running proxy passes its listening sockets and its client
// connections to a new process (a restart, an upgrade, a reload), so that
// clients see a pause instead of a closed socket.
//
// HandOver stops accepting (the listening sockets stay open: connections
// that arrive meanwhile wait in the kernel's accept queue for the next
// process) and asks every session to stop at a command boundary: nothing
// owed a reply (a busy session first gets its in-flight replies), every
// reply written to the client. The session then gives up its backend
// connection and hands over a duplicate of its client socket with the
// state a new backend connection needs (SessionState: what connState
// replays: AUTH, SELECT, CLIENT SETNAME, HELLO's protocol, subscriptions,
// ...) and the bytes it read but did not act on yet (a partial command,
// or commands that waited for a backend). The next process adopts them
// (NewFromHandoff) and a session's first command, or its subscriptions,
// dial a backend connection and replay the state as after a failover.
//
// A session that does not reach a boundary before the deadline (a
// blocking command that is not answered, a client that does not read its
// replies) is closed, and the log says why.

// handoverPendingMax bounds the unread input a session carries over; a
// session with a longer partial command is not at a boundary (it is closed
// at the deadline unless the command completes and is answered).
const handoverPendingMax = 32 << 10

// Handoff is what one process hands to the next: listening sockets and
// client connections, each an open file (a duplicate descriptor).
type Handoff struct {
	Listeners []ListenerHandoff
	Sessions  []SessionHandoff
}

// ListenerHandoff is a listening socket.
type ListenerHandoff struct {
	Name   string // "rw" or "ro"
	Listen string // the address it was bound for (proxy.listen / proxy.readonly_listen)
	File   *os.File
}

// SessionHandoff is a client connection at a command boundary.
type SessionHandoff struct {
	State SessionState
	File  *os.File
}

// SessionState is what a session needs to go on in another process. It
// holds the client's AUTH command: it only ever crosses the hand-over
// socket between two processes of the agent, never a log.
type SessionState struct {
	Listener       string     `json:"listener"`
	Authed         bool       `json:"authed,omitempty"`
	InMulti        bool       `json:"in_multi,omitempty"`
	MultiDirty     bool       `json:"multi_dirty,omitempty"`
	MultiMoved     bool       `json:"multi_moved,omitempty"`
	Watching       bool       `json:"watching,omitempty"`
	WatchLost      bool       `json:"watch_lost,omitempty"`
	ReplyOff       bool       `json:"reply_off,omitempty"`
	SkipNext       bool       `json:"skip_next,omitempty"`
	HelloAfterAuth bool       `json:"hello_after_auth,omitempty"`
	Monitoring     bool       `json:"monitoring,omitempty"` // MONITOR: replayed on the new connection
	OwnConn        bool       `json:"own_conn,omitempty"`
	MuxProto       int        `json:"mux_proto"`
	Proto          int        `json:"proto"`
	Auth           []byte     `json:"auth,omitempty"`
	Select         []byte     `json:"select,omitempty"`
	Name           []byte     `json:"name,omitempty"`
	Readonly       []byte     `json:"readonly,omitempty"`
	Replays        []KeyedRaw `json:"replays,omitempty"`
	Subs           [][]string `json:"subs,omitempty"` // by pub/sub family (channels, patterns, shard channels)
	// Pending is the input read and not yet acted on.
	Pending []byte `json:"pending,omitempty"`
}

// KeyedRaw is a replayed CLIENT command (SETINFO, TRACKING, ...).
type KeyedRaw struct {
	Key string `json:"key"`
	Raw []byte `json:"raw"`
}

// Close closes every file of h (after sending it, or when it is dropped).
func (h *Handoff) Close() {
	if h == nil {
		return
	}
	for _, l := range h.Listeners {
		_ = l.File.Close()
	}
	for _, s := range h.Sessions {
		_ = s.File.Close()
	}
}

// handover is the server's hand-over state.
type handover struct {
	accepting sync.WaitGroup // accept loops (Run)
	cur       atomic.Pointer[handoverRun]
	done      chan struct{} // closed when HandOver is done: Run returns
	adopt     []SessionHandoff
}

// handoverRun is one hand-over in progress.
type handoverRun struct {
	deadline time.Time
	// txUntil: until then a session inside MULTI or WATCH waits for its
	// EXEC (half the time to the deadline); after it, it moves with its
	// transaction, whose EXEC then fails as after a failover.
	txUntil time.Time
	// drain: a clean stop (drain.go): sessions close at their boundary
	// instead of moving; lastOld is the id of the last session accepted
	// before it began
	drain      bool
	lastOld    uint64
	firstUntil time.Time // the end of the drain's first step

	mu       sync.Mutex
	sessions []SessionHandoff
	closed   int
	drained  int
}

// ErrNotRunning: HandOver needs a running server.
var ErrNotRunning = errors.New("proxy: not running")

// HandOver stops serving and returns the listening sockets and every
// client connection that reached a command boundary before deadline (the
// others are closed and logged). Run returns once it is done. The caller
// owns the returned files.
func (srv *Server) HandOver(deadline time.Time) (*Handoff, error) {
	if !srv.running.Load() {
		return nil, ErrNotRunning
	}
	h := &Handoff{}
	for _, l := range srv.listeners() {
		fl, ok := l.ln.(interface{ File() (*os.File, error) })
		if !ok {
			h.Close()
			return nil, fmt.Errorf("proxy: listener %s cannot be handed over", l.name)
		}
		f, err := fl.File()
		if err != nil {
			h.Close()
			return nil, fmt.Errorf("proxy: listener %s: %w", l.name, err)
		}
		listen := srv.cfg.Listen
		if l.readonly {
			listen = srv.cfg.ReadonlyListen
		}
		h.Listeners = append(h.Listeners, ListenerHandoff{Name: l.name, Listen: listen, File: f})
	}
	run := &handoverRun{deadline: deadline, txUntil: time.Now().Add(time.Until(deadline) / 2)}
	if !srv.handover.cur.CompareAndSwap(nil, run) {
		h.Close()
		return nil, errors.New("proxy: a hand-over is already running")
	}
	start := time.Now()
	// The kernel keeps the sockets (h holds duplicates): connections that
	// arrive from now on wait in the accept queue for the next process.
	for _, l := range srv.listeners() {
		_ = l.ln.Close()
	}
	srv.handover.accepting.Wait() // every accepted session is registered now
	srv.kickAll()
	lastKick := time.Now()
	for srv.sessionCount() > 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
		if time.Since(lastKick) > 50*time.Millisecond {
			srv.kickAll() // one that slept somewhere long (a hold) looks again
			lastKick = time.Now()
		}
	}
	// Past the deadline every session still here closes (each logs why).
	for i := 0; srv.sessionCount() > 0 && i < 5000; i++ {
		srv.kickAll()
		time.Sleep(time.Millisecond)
	}
	run.mu.Lock()
	h.Sessions = run.sessions
	closed := run.closed
	run.mu.Unlock()
	srv.log.Info("hand-over: sessions ready for the next process", "sessions", len(h.Sessions),
		"closed", closed, "took", time.Since(start).Round(time.Microsecond))
	close(srv.handover.done)
	return h, nil
}

func (srv *Server) sessionCount() int {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	return len(srv.sessions)
}

func (srv *Server) kickAll() {
	srv.mu.Lock()
	all := make([]*session, 0, len(srv.sessions))
	for s := range srv.sessions {
		all = append(all, s)
	}
	srv.mu.Unlock()
	for _, s := range all {
		s.kick()
	}
}

// handingOver is the hand-over in progress, nil when none.
func (srv *Server) handingOver() *handoverRun { return srv.handover.cur.Load() }

// handoffNow says whether the session goroutine stops reading its client
// to hand the session over: a hand-over runs, and the session is not in a
// transaction that may still end in time (it goes on serving until EXEC;
// HandOver's kicks bring it back here).
func (s *session) handoffNow() *handoverRun {
	run := s.srv.handingOver()
	if run == nil || s.quitting {
		return nil
	}
	if run.drain && s.drainServing(run) {
		return nil
	}
	s.mu.Lock()
	tx := s.inMulti || s.watching
	s.mu.Unlock()
	if tx && time.Now().Before(run.txUntil) {
		return nil
	}
	return run
}

// handOff is called by the session goroutine while a hand-over runs,
// instead of reading the client. done: the session ends (handed over, or
// closed at the deadline); otherwise it is not at a boundary yet.
func (s *session) handOff(run *handoverRun) (done bool) {
	s.mu.Lock()
	busy := s.handoffBusyLocked()
	be := s.be
	if run.drain {
		// the reply that ends the wait wakes us (replies.go) and closes
		// the write side at once (finNext)
		s.drainWait, s.drainFin = busy != "", true
	}
	s.mu.Unlock()
	if busy != "" {
		if time.Now().Before(run.deadline) {
			s.sleep(time.Now().Add(time.Millisecond))
			return false
		}
		return s.handoffClose(run, "not at a command boundary by the deadline: "+busy)
	}
	if run.drain {
		return s.drainClose(run)
	}
	// Nothing is owed a reply: the backend connection goes (after it,
	// nothing more is written to the client here, pushes included).
	if be != nil {
		s.retire(be, time.Time{})
	}
	for !s.outputIdle() {
		if !time.Now().Before(run.deadline) {
			return s.handoffClose(run, "not at a command boundary by the deadline: replies not yet read by the client")
		}
		s.emitLocals()
		s.sleep(time.Now().Add(time.Millisecond))
	}
	fc, ok := s.client.(interface{ File() (*os.File, error) })
	if !ok {
		// TLS: its keys and sequence numbers live in this process. Closed
		// after its last reply; the client reconnects to the new process.
		return s.handoffClose(run, "TLS connection: its session cannot move to another process")
	}
	f, err := fc.File()
	if err != nil {
		return s.handoffClose(run, err.Error())
	}
	s.mu.Lock()
	st := s.exportLocked()
	s.mu.Unlock()
	run.mu.Lock()
	run.sessions = append(run.sessions, SessionHandoff{State: st, File: f})
	run.mu.Unlock()
	s.debug("hand-over: session handed over", "subscribed", st.Subs != nil, "pending_bytes", len(st.Pending))
	return true
}

// handoffBusyLocked says why the session is not at a command boundary
// ("" when it is).
func (s *session) handoffBusyLocked() string {
	switch {
	case s.closing:
		return "closing"
	case s.q.len() > 0 || s.inflight > 0:
		return "replies in flight (e.g. a blocking command)"
	case s.unsent > 0:
		return "commands waiting to be sent again"
	case s.rr.end-s.rr.start > handoverPendingMax:
		return "a partial command larger than 32 KiB"
	}
	return ""
}

func (s *session) outputIdle() bool {
	if !s.wmu.TryLock() {
		return false
	}
	s.mu.Lock()
	idle := s.clientOutput.idle()
	s.mu.Unlock()
	s.wmu.Unlock()
	return idle
}

func (s *session) handoffClose(run *handoverRun, why string) bool {
	run.mu.Lock()
	run.closed++
	run.mu.Unlock()
	s.logger().Warn("hand-over: client connection closed", "reason", why)
	return true
}

// exportLocked is the session's state for the next process.
func (s *session) exportLocked() SessionState {
	c := &s.connState
	st := SessionState{
		Listener: s.l.name, Authed: c.authed, InMulti: c.inMulti, MultiDirty: c.multiDirty,
		MultiMoved: c.multiMoved, Watching: c.watching, WatchLost: c.watchLost, ReplyOff: c.replyOff,
		SkipNext: c.skipNext, HelloAfterAuth: c.helloAfterAuth, OwnConn: c.ownConn, Monitoring: c.monitoring,
		MuxProto: c.muxProto, Proto: c.proto,
	}
	if r := c.replayState; r != nil {
		st.Auth, st.Select, st.Name, st.Readonly = r.authRaw, r.selectRaw, r.nameRaw, r.readonlyRaw
		for _, k := range r.replays {
			st.Replays = append(st.Replays, KeyedRaw{Key: k.key, Raw: k.raw})
		}
		if c.subscribed() {
			st.Subs = make([][]string, numFams)
			for fam, set := range r.subs {
				for name := range set {
					st.Subs[fam] = append(st.Subs[fam], name)
				}
			}
		}
	}
	if s.rr.buffered() {
		st.Pending = append([]byte(nil), s.rr.buf[s.rr.start:s.rr.end]...)
	}
	return st
}

// importState gives a new session the state of a handed-over one.
func (s *session) importState(st SessionState) {
	c := &s.connState
	c.authed, c.inMulti, c.multiDirty, c.multiMoved = st.Authed, st.InMulti, st.MultiDirty, st.MultiMoved
	c.watching, c.watchLost, c.replyOff, c.skipNext = st.Watching, st.WatchLost, st.ReplyOff, st.SkipNext
	c.helloAfterAuth, c.ownConn, c.monitoring = st.HelloAfterAuth, st.OwnConn, st.Monitoring
	if st.MuxProto == 2 || st.MuxProto == 3 {
		c.muxProto = st.MuxProto
	}
	if st.Proto == 2 || st.Proto == 3 {
		c.proto = st.Proto
	}
	if st.Auth != nil || st.Select != nil || st.Name != nil || st.Readonly != nil || len(st.Replays) > 0 || len(st.Subs) > 0 {
		c.ensureState()
		r := c.replayState
		r.authRaw, r.selectRaw, r.nameRaw, r.readonlyRaw = st.Auth, st.Select, st.Name, st.Readonly
		for _, k := range st.Replays {
			r.replays = append(r.replays, keyedRaw{key: k.Key, raw: k.Raw})
		}
		for fam, names := range st.Subs {
			if fam >= int(numFams) || len(names) == 0 {
				continue
			}
			r.subs[fam] = make(map[string]struct{}, len(names))
			for _, n := range names {
				r.subs[fam][n] = struct{}{}
			}
		}
	}
	if s.srv.cfg.Multiplex && !c.ownConn && needsOwnConn(st) {
		// the previous process did not multiplex (proxy.multiplex changed):
		// state a shared connection cannot carry keeps a connection of its own
		c.ownConn = true
	}
	for p := st.Pending; len(p) > 0; {
		n := copy(s.rr.space(), p)
		s.rr.end += n
		p = p[n:]
	}
}

// NewFromHandoff is New for a process that takes over from another: it
// uses the handed-over listening sockets whose address is still the one
// configured (binding the others) and adopts the client connections when
// Run starts. h may be nil (New).
func NewFromHandoff(cfg Config, routes RouteSource, logger *slog.Logger, h *Handoff) (*Server, error) {
	inherited := map[string]*os.File{}
	if h != nil {
		for _, l := range h.Listeners {
			if (l.Name == "rw" && l.Listen == cfg.Listen) || (l.Name == "ro" && l.Listen == cfg.ReadonlyListen && l.Listen != "") {
				inherited[l.Name+" "+l.Listen] = l.File
			} else {
				// its address changed: closed first, so that the new
				// address may be the same port written another way
				_ = l.File.Close()
			}
		}
	}
	listen := func(name, addr string) (net.Listener, error) {
		f := inherited[name+" "+addr]
		if f == nil {
			return net.Listen("tcp", addr)
		}
		delete(inherited, name+" "+addr)
		defer f.Close()
		return net.FileListener(f)
	}
	srv, err := newServer(cfg, routes, logger, listen)
	for _, f := range inherited {
		_ = f.Close() // not used (newServer failed first)
	}
	if err != nil {
		if h != nil {
			for _, s := range h.Sessions {
				_ = s.File.Close()
			}
		}
		return nil, err
	}
	if h != nil {
		srv.handover.adopt = h.Sessions
	}
	return srv, nil
}

// startAdopted starts the sessions handed over by the previous process
// (Run, once the idle poller is there).
func (srv *Server) startAdopted() {
	adopt := srv.handover.adopt
	srv.handover.adopt = nil
	n := 0
	for _, sh := range adopt {
		c, err := net.FileConn(sh.File)
		_ = sh.File.Close()
		if err != nil {
			srv.log.Warn("hand-over: cannot adopt a client connection", "err", err)
			continue
		}
		l := srv.rw
		if sh.State.Listener == "ro" {
			if srv.ro == nil {
				srv.log.Warn("hand-over: client of the read-only listener closed: proxy.readonly_listen is off now", "client_addr", c.RemoteAddr().String())
				_ = c.Close()
				continue
			}
			l = srv.ro
		}
		l.cur.Add(1)
		l.total.Add(1)
		srv.adopted(c)
		s := newSession(srv, l, c, srv.nextID.Add(1))
		s.importState(sh.State)
		srv.mu.Lock()
		srv.sessions[s] = struct{}{}
		srv.wg.Add(1)
		srv.mu.Unlock()
		go s.serve()
		n++
	}
	if len(adopt) > 0 {
		srv.log.Info("hand-over: adopted client connections", "sessions", n, "failed", len(adopt)-n)
	}
}

// handoverHolds says whether a session waiting for a backend connection
// stops waiting: a hand-over runs and nothing is owed a reply, so the
// commands it holds go to the next process unanswered.
func (s *session) handoverHolds() bool {
	if run := s.handoffNow(); run == nil || run.drain {
		return false // a drain serves what it holds
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.q.len() == 0 && s.unsent == 0
}

// needsOwnConn says whether a session's state needs a dedicated backend
// connection (see sharedOK: only CLIENT SETINFO and the protocol ride on a
// shared one).
func needsOwnConn(st SessionState) bool {
	if st.Auth != nil || st.Select != nil || st.Name != nil || st.Readonly != nil || len(st.Subs) > 0 ||
		st.InMulti || st.Watching || st.ReplyOff || st.SkipNext || st.Monitoring {
		return true
	}
	for _, r := range st.Replays {
		if !strings.HasPrefix(r.Key, "setinfo") {
			return true
		}
	}
	return false
}

// adopted counts an adopted client of c's address (proxy.max_clients_per_ip)
// without refusing it: the previous process admitted it.
func (srv *Server) adopted(c net.Conn) {
	ip := clientIP(c)
	srv.perIP.mu.Lock()
	srv.perIP.n[ip]++
	srv.perIP.mu.Unlock()
}
