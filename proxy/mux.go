package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// muxConn is one backend connection shared by many sessions
// (proxy.multiplex). Each session attached to it has a backendConn of its
// own (be.mux set, no socket): the session logic is the same as on a
// dedicated connection, it only sees its own replies.
//
// Writers append a batch and who it belongs to under mu; the first writer
// in writes for everyone who appended meanwhile (one write per batch). The
// reader frames the replies of one read, takes the owners of that many
// replies from the queue, and hands each session its run of replies.
type muxConn struct {
	srv   *Server
	key   muxKey
	addr  string
	proto int // 2, or 3 after HELLO 3 when dialed
	// retired: no session may send on it any more (the authentication it
	// was opened with may no longer be what a new connection gets); each
	// member moves to a fresh one after its in-flight replies, and the
	// last one to leave closes it (retireMux).
	retired atomic.Bool
	// stalled: it waits for a reply while the server answers others (a
	// busy script, a write held by CLIENT PAUSE): no new member, and a
	// member with nothing in flight moves to a fresh one (muxstall.go)
	stalled atomic.Bool
	authed  bool // it answered PING when opened (not NOAUTH)
	conn    net.Conn
	stats   *backendStats

	mu      sync.Mutex
	wbuf    []byte // to be written, in order
	spare   []byte
	writing bool
	pending muxQueue // owners of the replies still due, in write order
	members map[*backendConn]struct{}
	dead    bool
	err     error
	// waitingSince: when it last started waiting for a reply with
	// nothing answered since (unix ns; 0: nothing due)
	waitingSince int64
	// queued and written count the bytes appended to wbuf and handed to
	// the socket; waitFor is queued when waitingSince was set: once
	// written reaches it, the command waited for is surely on its way to
	// the server (a stall probe before that proves nothing: the writer
	// may merely not have run yet on a loaded machine)
	queued, written, waitFor uint64
	probing                  bool // a stall probe is under way (muxstall.go)
	// holding: it has waited past muxHoldAfter for a reply already
	// written; new commands are held in held instead of written, until a
	// reply comes or the probe decides (muxstall.go)
	holding bool
	held    []muxHeld     // commands held back, in the order they came
	reads   atomic.Uint64 // reads that returned data (a stall probe looks for silence)

	// owned by the reader goroutine
	buf           []byte
	fs, scan, end int
	framer        respFramer
	bounds        []int // ends of the replies complete in this read
	batch         []muxPending
}

type muxPending struct {
	be *backendConn
	n  int32 // replies due
}

// muxQueue is a FIFO of muxPending.
type muxQueue struct {
	q    []muxPending
	head int
}

func (q *muxQueue) push(p muxPending) {
	if q.head > 0 && q.head == len(q.q) {
		q.q, q.head = q.q[:0], 0
	}
	if n := len(q.q); n > 0 && q.q[n-1].be == p.be && q.head < n {
		q.q[n-1].n += p.n // same session twice in a row: one run
		return
	}
	q.q = append(q.q, p)
}

func (q *muxQueue) len() int { return len(q.q) - q.head }

// take moves the owners of the next n replies to out.
func (q *muxQueue) take(n int, out []muxPending) ([]muxPending, bool) {
	for n > 0 {
		if q.head == len(q.q) {
			return out, false
		}
		h := &q.q[q.head]
		k := int32(min(int64(n), int64(h.n)))
		out = append(out, muxPending{be: h.be, n: k})
		n -= int(k)
		if h.n -= k; h.n == 0 {
			q.q[q.head] = muxPending{}
			q.head++
		}
	}
	if q.head > 4096 && q.head*2 > len(q.q) {
		k := copy(q.q, q.q[q.head:])
		clear(q.q[k:])
		q.q, q.head = q.q[:k], 0
	}
	return out, true
}

// muxPool holds the shared connections, per backend address.
type muxPool struct {
	mu      sync.Mutex
	conns   map[muxKey][]*muxConn
	dialing map[muxKey]*muxDial
	wg      sync.WaitGroup
}

// muxKey: sessions share a connection to the same server, speaking the
// same protocol (HELLO 2 or 3). The identity is the proxy's own
// (proxy.password mode) or none: a session that authenticates itself
// (AUTH passed through) keeps its own connection.
type muxKey struct {
	addr  string
	proto int
}

type muxDial struct {
	done chan struct{}
	err  error
}

var errMuxClosed = errors.New("shared backend connection closed")

// attach gives s a backendConn on a shared connection to addr, dialing
// one if the pool has fewer than proxy.multiplex_conns.
func (srv *Server) attach(s *session, addr string, proto int) (*backendConn, error) {
	p := &srv.mux
	key := muxKey{addr, proto}
	for attempt := 0; attempt < 3; attempt++ {
		p.mu.Lock()
		var best *muxConn
		live := 0
		var stalled *muxConn
		for _, m := range p.conns[key] {
			if m.stalled.Load() && !m.retired.Load() {
				stalled = m
			}
			if m.retired.Load() || m.stalled.Load() {
				continue
			}
			live++
			if best == nil || len(m.members) < len(best.members) {
				best = m
			}
		}
		if best != nil && (live >= srv.cfg.MultiplexConns || len(best.members) == 0) {
			best.mu.Lock()
			if !best.dead {
				be := &backendConn{addr: addr, mux: best, owner: s, stats: best.stats, done: make(chan struct{})}
				close(be.done) // no reader goroutine of its own
				best.members[be] = struct{}{}
				best.mu.Unlock()
				p.mu.Unlock()
				return be, nil
			}
			best.mu.Unlock()
		}
		if d := p.dialing[key]; d != nil {
			p.mu.Unlock()
			<-d.done
			if d.err != nil {
				return nil, d.err
			}
			continue
		}
		d := &muxDial{done: make(chan struct{})}
		p.dialing[key] = d
		p.mu.Unlock()
		m, err := srv.dialMux(key)
		if err != nil && stalled != nil {
			// a fresh connection is refused or times out (CLIENT PAUSE
			// ALL): wait behind the stalled one, as before
			p.mu.Lock()
			delete(p.dialing, key)
			d.err = nil
			close(d.done)
			stalled.mu.Lock()
			if !stalled.dead {
				be := &backendConn{addr: addr, mux: stalled, owner: s, stats: stalled.stats, done: make(chan struct{}), stallOK: true}
				close(be.done)
				stalled.members[be] = struct{}{}
				stalled.mu.Unlock()
				p.mu.Unlock()
				return be, nil
			}
			stalled.mu.Unlock()
			p.mu.Unlock()
			return nil, err
		}
		p.mu.Lock()
		delete(p.dialing, key)
		if err == nil {
			p.conns[key] = append(p.conns[key], m)
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				m.readLoop()
			}()
		}
		d.err = err
		close(d.done)
		p.mu.Unlock()
		if err != nil {
			return nil, err
		}
	}
	return nil, fmt.Errorf("shared backend connection to %s: no usable connection", addr)
}

// dialMux connects to addr, authenticates with the proxy's backend
// credentials (proxy.password mode) and switches to RESP3 if asked,
// before anyone shares the connection.
func (srv *Server) dialMux(key muxKey) (*muxConn, error) {
	addr := key.addr
	c, st, err := srv.dialTCP(addr)
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(srv.cfg.DialTimeout))
	if hello := srv.muxHello(key); len(hello) > 0 {
		if err := handshake(c, hello); err != nil {
			st.errors.Add(1)
			_ = c.Close()
			return nil, fmt.Errorf("set up shared backend connection to %s: %w", addr, err)
		}
	}
	// Is it authenticated? (Only one that is can be inherited after a
	// password is set at runtime: authCheckLoop watches those.)
	err = handshake(c, pingRaw)
	if refusedBusy(err) {
		err = nil // running a script: no answer on authentication yet (authCheckLoop watches it)
	}
	if err != nil && !refusedAuth(err) {
		st.errors.Add(1)
		_ = c.Close()
		return nil, fmt.Errorf("set up shared backend connection to %s: %w", addr, err)
	}
	_ = c.SetDeadline(time.Time{})
	srv.log.Debug("shared backend connection opened", "backend_addr", addr, "protocol", key.proto, "authenticated", err == nil)
	return &muxConn{srv: srv, key: key, addr: addr, proto: key.proto, authed: err == nil, conn: c, stats: st,
		members: map[*backendConn]struct{}{}, buf: make([]byte, readBufSize)}, nil
}

// refusedError is an error reply to a handshake command.
type refusedError struct{ reply string }

func (e *refusedError) Error() string { return "refused: " + e.reply }

// refusedAuth says whether err is a handshake refused for want of
// authentication (NOAUTH, WRONGPASS).
func refusedAuth(err error) bool {
	var re *refusedError
	return errors.As(err, &re) && (strings.HasPrefix(re.reply, "-NOAUTH") || strings.HasPrefix(re.reply, "-WRONGPASS"))
}

// refusedBusy says whether err is a handshake answered -BUSY (a script
// or function running).
func refusedBusy(err error) bool {
	var re *refusedError
	return errors.As(err, &re) && strings.HasPrefix(re.reply, "-BUSY")
}

// handshake sends cmds and reads one reply per command; an error reply
// fails it (a *refusedError).
func handshake(c net.Conn, cmds []byte) error {
	want := 0
	for rest := cmds; len(rest) > 0; rest = rest[commandLen(rest):] {
		want++
	}
	if _, err := c.Write(cmds); err != nil {
		return err
	}
	buf := make([]byte, 0, 4096)
	var f respFramer
	start, scan := 0, 0
	for want > 0 {
		if len(buf) == cap(buf) {
			if cap(buf) > 1<<20 {
				return errors.New("handshake reply too large")
			}
			buf = append(buf, make([]byte, cap(buf))...)[:len(buf)]
		}
		n, err := c.Read(buf[len(buf):cap(buf)])
		if err != nil {
			return err
		}
		buf = buf[:len(buf)+n]
		for scan < len(buf) {
			k, done, err := f.feed(buf[scan:])
			if err != nil {
				return err
			}
			scan += k
			if !done {
				break
			}
			if buf[start] == '-' || buf[start] == '!' {
				return &refusedError{string(firstLine(buf[start:scan]))}
			}
			start = scan
			want--
		}
	}
	return nil
}

// send writes one batch of be's commands (n replies due; at is the
// session's log offset of p). The batches of every session are written in
// the order they were appended; whoever finds no write under way writes
// for all. A connection holding (muxstall.go) keeps the batch back
// instead, as it does every later batch of a place it holds some of.
func (m *muxConn) send(be *backendConn, p []byte, n int, at int64) {
	m.mu.Lock()
	if m.dead {
		m.mu.Unlock()
		return // the reader's end answers be's commands as lost
	}
	if m.holding || be.heldLen > 0 {
		m.holdLocked(be, p, n, at)
		m.mu.Unlock()
		return
	}
	m.wbuf = append(m.wbuf, p...)
	m.queued += uint64(len(p))
	if n > 0 {
		be.due.Add(int64(n))
		if m.pending.len() == 0 {
			m.waitingSince = time.Now().UnixNano()
			m.waitFor = m.queued
		}
		m.pending.push(muxPending{be: be, n: int32(n)})
	}
	if m.writing {
		m.mu.Unlock()
		return
	}
	m.writing = true
	m.mu.Unlock()
	// Let the other sessions that are ready to run append their commands
	// first: without this, on few cores each session would find no write
	// under way and write its own command alone (no batching; measured).
	runtime.Gosched()
	m.mu.Lock()
	m.writeLocked()
	m.mu.Unlock()
}

// writeLocked writes wbuf until it is empty (mu held, released around
// each write; the caller set writing).
func (m *muxConn) writeLocked() {
	for len(m.wbuf) > 0 && !m.dead {
		b := m.wbuf
		m.wbuf = m.spare[:0]
		m.mu.Unlock()
		_, err := m.conn.Write(b)
		m.mu.Lock()
		if err == nil {
			m.written += uint64(len(b))
		}
		if cap(b) <= keepBufMax {
			m.spare = b[:0]
		} else {
			m.spare = nil
		}
		if err != nil {
			_ = m.conn.SetDeadline(aLongTimeAgo) // the reader ends it for everyone
			break
		}
	}
	m.writing = false
}

// detach removes be from the connection; a connection nobody uses is
// closed once its address is out of the route.
func (m *muxConn) detach(be *backendConn) {
	p := &m.srv.mux
	p.mu.Lock()
	m.mu.Lock()
	delete(m.members, be)
	m.dropHeldLocked(be) // never written: the session answers them (lose)
	idle := len(m.members) == 0 && !m.dead
	m.mu.Unlock()
	p.mu.Unlock()
	if idle && (m.retired.Load() || m.stalled.Load() || !m.srv.inRoute(m.addr)) {
		m.close()
	}
}

func (m *muxConn) close() { _ = m.conn.SetDeadline(aLongTimeAgo) }

// retireMux retires the shared connections to addr (every address when
// addr is ""): the authentication they were opened with may no longer be
// what a new connection gets (a password set or an ACL user changed at
// runtime: Redis keeps an existing connection authenticated, so a new
// client must not inherit it). New sessions get a fresh connection; each
// member is woken to move after its in-flight replies.
func (srv *Server) retireMux(addr, why string) {
	p := &srv.mux
	var owners []*session
	var idle []*muxConn
	n := 0
	p.mu.Lock()
	for key, ms := range p.conns {
		if addr != "" && key.addr != addr {
			continue
		}
		for _, m := range ms {
			if m.retired.Swap(true) {
				continue
			}
			n++
			m.mu.Lock()
			for be := range m.members {
				owners = append(owners, be.owner)
			}
			if len(m.members) == 0 {
				idle = append(idle, m)
			}
			m.mu.Unlock()
		}
	}
	p.mu.Unlock()
	if n == 0 {
		return
	}
	srv.log.Info("shared backend connections retired", "backend_addr", addr, "reason", why, "connections", n, "sessions", len(owners))
	for _, m := range idle {
		m.close()
	}
	for _, s := range owners {
		s.kick()
	}
}

// muxAuthCheckEvery is how often the authentication of shared connections
// is checked on a fresh connection (authCheckLoop).
const muxAuthCheckEvery = time.Second

// authCheckLoop finds authentication changes made outside the proxy (a
// password set on a direct connection, an ACL file loaded): every
// muxAuthCheckEvery, for each address with shared connections, a fresh
// connection is opened the way a shared one is; if Redis now refuses it
// (NOAUTH, WRONGPASS), the shared connections to that address are retired.
func (srv *Server) authCheckLoop(ctx context.Context) {
	t := time.NewTicker(muxAuthCheckEvery)
	defer t.Stop()
	var keys []muxKey
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		keys = keys[:0]
		p := &srv.mux
		p.mu.Lock()
		for key, ms := range p.conns {
			for _, m := range ms {
				if m.authed && !m.retired.Load() {
					keys = append(keys, key)
					break
				}
			}
		}
		p.mu.Unlock()
		for _, key := range keys {
			if ctx.Err() != nil {
				return
			}
			if err := srv.probeMux(key); refusedAuth(err) {
				srv.retireMux(key.addr, "a new connection is refused: "+err.Error())
			}
		}
	}
}

// probeMux opens a connection as dialMux would and sends PING on it.
func (srv *Server) probeMux(key muxKey) error {
	c, err := srv.dialBackend(key.addr)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(srv.cfg.DialTimeout))
	return handshake(c, append(srv.muxHello(key), pingRaw...))
}

// muxHello is what a shared connection is set up with.
func (srv *Server) muxHello(key muxKey) []byte {
	var hello []byte
	if srv.needAuth && srv.backendAuth != nil {
		hello = append(hello, srv.backendAuth...)
	}
	if key.proto == 3 {
		hello = append(hello, cmdHello3...)
	}
	return hello
}

// pruneMux closes the idle shared connections to addresses no longer in
// the route.
func (srv *Server) pruneMux() {
	p := &srv.mux
	p.mu.Lock()
	var idle []*muxConn
	for key, ms := range p.conns {
		if srv.inRoute(key.addr) {
			continue
		}
		for _, m := range ms {
			m.mu.Lock()
			if len(m.members) == 0 {
				idle = append(idle, m)
			}
			m.mu.Unlock()
		}
	}
	p.mu.Unlock()
	for _, m := range idle {
		m.close()
	}
}

// closeMux ends every shared connection and waits for their readers.
func (srv *Server) closeMux() {
	p := &srv.mux
	p.mu.Lock()
	for _, ms := range p.conns {
		for _, m := range ms {
			m.close()
		}
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func (m *muxConn) space() []byte {
	if len(m.buf)-m.end < 4096 {
		if m.fs > 0 {
			n := copy(m.buf, m.buf[m.fs:m.end])
			m.scan -= m.fs
			m.end = n
			m.fs = 0
		}
		if len(m.buf)-m.end < 4096 {
			// one reply larger than the buffer: it is delivered whole
			nb := make([]byte, 2*len(m.buf))
			copy(nb, m.buf[:m.end])
			m.buf = nb
		}
	}
	return m.buf[m.end:]
}

func (m *muxConn) readLoop() {
	err := readLoop(m.conn, m.space, m.onData, nil)
	if err == nil {
		err = errMuxClosed
	}
	m.fail(err)
}

// onData frames the replies complete in the buffer, finds whose they are
// and hands each session its run.
func (m *muxConn) onData(n int) bool {
	m.end += n
	m.reads.Add(1)
	m.bounds = m.bounds[:0]
	for m.scan < m.end {
		if !m.framer.mid() {
			if j := simpleReplyLen(m.buf[m.scan:m.end]); j > 0 {
				m.scan += j
				m.bounds = append(m.bounds, m.scan)
				continue
			}
		}
		k, done, err := m.framer.feed(m.buf[m.scan:m.end])
		if err != nil {
			m.err = fmt.Errorf("bad reply from redis: %w", err)
			return false
		}
		m.scan += k
		if !done {
			break
		}
		m.bounds = append(m.bounds, m.scan)
	}
	if len(m.bounds) > 0 {
		m.mu.Lock()
		var ok bool
		m.batch, ok = m.pending.take(len(m.bounds), m.batch[:0])
		m.waitingSince = 0
		if m.pending.len() > 0 {
			m.waitingSince = time.Now().UnixNano()
			m.waitFor = m.queued
		}
		if m.holding || len(m.held) > 0 {
			// the reply came: what was held goes behind what is still due
			m.releaseHeldLocked(nil)
		}
		m.mu.Unlock()
		if !ok {
			m.err = errors.New("reply with no command waiting for it")
			return false
		}
		pos, i := m.fs, 0
		for _, p := range m.batch {
			i += int(p.n)
			end := m.bounds[i-1]
			p.be.due.Add(-int64(p.n))
			p.be.owner.deliverMux(p.be, m.buf[pos:end])
			pos = end
		}
		clear(m.batch)
		m.fs = pos
	}
	if m.fs == m.end {
		m.fs, m.scan, m.end = 0, 0, 0
		if len(m.buf) > readBufSize && len(m.buf) > keepBufMax {
			m.buf = make([]byte, readBufSize)
		}
	}
	return true
}

// fail ends the shared connection: every session on it loses what it had
// in flight, as with a dedicated connection.
func (m *muxConn) fail(err error) {
	if m.err != nil {
		err = m.err
	}
	p := &m.srv.mux
	p.mu.Lock()
	m.mu.Lock()
	m.dead = true
	for _, h := range m.held {
		h.be.heldLen, h.be.heldN = 0, 0
	}
	m.held, m.holding = nil, false
	members := make([]*backendConn, 0, len(m.members))
	for be := range m.members {
		members = append(members, be)
	}
	m.members = map[*backendConn]struct{}{}
	m.mu.Unlock()
	ms := p.conns[m.key]
	for i, x := range ms {
		if x == m {
			p.conns[m.key] = append(ms[:i:i], ms[i+1:]...)
			break
		}
	}
	if len(p.conns[m.key]) == 0 {
		delete(p.conns, m.key)
	}
	p.mu.Unlock()
	_ = m.conn.Close()
	quiet := errors.Is(err, io.EOF) || errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, net.ErrClosed) || errors.Is(err, errMuxClosed)
	if !errors.Is(err, net.ErrClosed) && !errors.Is(err, errMuxClosed) {
		m.stats.lost.Store(true) // not closed by us
	}
	if len(members) > 0 && !quiet {
		m.srv.log.Warn("shared backend connection lost", "backend_addr", m.addr, "err", err, "sessions", len(members))
	} else {
		m.srv.log.Debug("shared backend connection closed", "backend_addr", m.addr, "err", err, "sessions", len(members))
	}
	for _, be := range members {
		be.owner.lose(be, err)
	}
}

// deliverMux hands s its replies (complete ones) from a shared connection.
// It never waits for the client: the replies go to pend, and are written
// now if the client's socket takes them, else by the flusher.
func (s *session) deliverMux(be *backendConn, replies []byte) {
	s.mu.Lock()
	if be.retiring || be.dead || s.be != be {
		s.mu.Unlock()
		return // retired with these still due: already answered as lost
	}
	_, _, ok := s.repliesLocked(be, replies, 0, 0) // complete replies only
	wake := be.kickC || (s.drainWait && s.inflight == 0) || !ok
	be.kickC = false
	if !ok {
		s.closing = true
	}
	over := int64(len(s.pend))+s.outBacklog.Load() > s.srv.settings().ClientOutputLimit
	if over {
		s.closing = true
		s.pend = nil
		s.srv.closed[closedOutputLimit].Add(1)
	}
	s.localsWaiting = true
	s.mu.Unlock()
	if over {
		s.logger().Warn("client output over proxy.client_output_limit; closing the client (it does not read its replies)",
			"limit_bytes", s.srv.settings().ClientOutputLimit)
		s.shutdown()
		return
	}
	s.deliver(s)
	if wake {
		s.kick()
	}
}

// lose ends be (shared connection gone, or the session retired it): once.
func (s *session) lose(be *backendConn, err error) {
	if be.gone.CompareAndSwap(false, true) {
		s.backendGone(be, err)
	}
}

// inRoute says whether addr is the master or a replica of the route.
func (srv *Server) inRoute(addr string) bool {
	r := srv.route.Load()
	return r != nil && (addr == r.Master || slices.Contains(r.Replicas, addr))
}
