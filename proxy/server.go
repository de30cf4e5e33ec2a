package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Server is the proxy: its listeners and sessions.
type Server struct {
	cfg      Config
	routes   RouteSource
	log      *slog.Logger
	rw, ro   *listener
	tls      *tlsServer // proxy.tls; nil: plain TCP
	needAuth bool
	// backendAuth is the AUTH command for backend connections (proxy.password mode).
	backendAuth []byte
	// cmds is the command table with proxy.deny_commands applied
	cmds *cmdIndex
	// refused counts refused commands by name (refused.go)
	refused refusedCounter

	route    atomic.Pointer[Route]
	routeGen atomic.Uint64
	// routeMu makes a route change (route, then routeGen) one step for
	// WritingTo.
	routeMu sync.Mutex
	// deposals: the last route changes that deposed a master (the route
	// named a master other than the one before, or one as Replaced), by
	// the routeGen they made, oldest first, at most maxDeposals (under
	// routeMu; deposedSince); a change of replicas alone is not one
	deposals   []deposal
	lastMaster string // the last master a route named (under routeMu)
	nextID     atomic.Uint64
	running    atomic.Bool

	mux       muxPool      // shared backend connections (proxy.multiplex)
	muxStalls atomic.Int64 // shared connections found stalled (muxstall.go)
	muxHolds  atomic.Int64 // times a shared connection held new commands back (muxstall.go)
	// noHold: shared connections never hold commands back (a test that
	// needs commands in flight behind a paused write)
	noHold       atomic.Bool
	muxHeldMoved atomic.Int64 // commands held on a stalled shared connection, sent on a fresh one
	movedDeep    atomic.Int64 // sessions moved to their own connection by the head-of-line bounds (muxRoomLocked)

	idle            *idlePoller // parked idle sessions (park.go); nil: never parked
	parkedSinceFree atomic.Int64

	// connection hygiene and bounds (hygiene.go, budget.go)
	budget  *bufferBudget
	perIP   perIP
	closed  closedCounters
	rateLog rateLog

	mu       sync.Mutex
	sessions map[*session]struct{}
	backends map[string]*backendStats
	stopping bool
	wg       sync.WaitGroup

	handover handover             // handover.go
	drain    drainState           // drain.go
	live     atomic.Pointer[Live] // live.go: nil until first read or SetLive
}

type listener struct {
	name     string
	readonly bool
	ln       net.Listener

	cur, peak, total, refused atomic.Int64
	// counters of sessions that ended
	commands, bytesIn, bytesOut, errs atomic.Int64
	resent                            atomic.Int64 // live: sessions add directly (rare)
	moved                             atomic.Int64 // sessions that left a shared connection for their own
	parked                            atomic.Int64 // idle sessions without a goroutine now (park.go)
	authFailures                      atomic.Int64 // wrong passwords (the proxy's, or Redis's WRONGPASS)
	tlsFailed                         atomic.Int64 // TLS handshakes that failed (tls.go)
}

// New validates cfg and binds the listeners (so Addr works); it starts no
// goroutine.
func New(cfg Config, routes RouteSource, logger *slog.Logger) (*Server, error) {
	return newServer(cfg, routes, logger, func(_, addr string) (net.Listener, error) { return net.Listen("tcp", addr) })
}

func newServer(cfg Config, routes RouteSource, logger *slog.Logger, listen func(name, addr string) (net.Listener, error)) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if routes == nil {
		return nil, errors.New("proxy: nil RouteSource")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	srv := &Server{
		cfg: cfg, routes: routes, log: logger.With("component", "proxy"),
		needAuth: cfg.Password != "",
		sessions: map[*session]struct{}{},
		backends: map[string]*backendStats{},
		mux:      muxPool{conns: map[muxKey][]*muxConn{}, dialing: map[muxKey]*muxDial{}},
		budget:   newBufferBudget(cfg.MaxBufferMemory),
		perIP:    perIP{n: map[netip.Addr]int{}},
		handover: handover{done: make(chan struct{})},
		drain:    drainState{first: make(chan struct{})},
	}
	srv.cmds = newCmdIndex(mustParseDeny(cfg.DenyCommands)) // validated above
	if srv.needAuth && cfg.BackendPassword != "" {
		if cfg.BackendUsername != "" {
			srv.backendAuth = appendCommandStrings(nil, "AUTH", cfg.BackendUsername, cfg.BackendPassword)
		} else {
			srv.backendAuth = appendCommandStrings(nil, "AUTH", cfg.BackendPassword)
		}
	}
	if cfg.TLS.Enabled {
		t, err := newTLSServer(cfg.TLS)
		if err != nil {
			return nil, err
		}
		srv.tls = t
	}
	ln, err := listen("rw", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("proxy.listen %s: %w", cfg.Listen, err)
	}
	srv.rw = &listener{name: "rw", ln: ln}
	if cfg.ReadonlyListen != "" {
		ln, err := listen("ro", cfg.ReadonlyListen)
		if err != nil {
			srv.rw.ln.Close()
			return nil, fmt.Errorf("proxy.readonly_listen %s: %w", cfg.ReadonlyListen, err)
		}
		srv.ro = &listener{name: "ro", readonly: true, ln: ln}
	}
	return srv, nil
}

// Close frees the listeners New bound, for when Run will never be called
// (e.g. a later part of the agent failed to build).
func (srv *Server) Close() error {
	if srv.running.Load() {
		return nil // Run owns them and closes them when its context ends
	}
	var errs []error
	for _, l := range srv.listeners() {
		errs = append(errs, l.ln.Close())
	}
	return errors.Join(errs...)
}

// Addr is the read-write listener's address.
func (srv *Server) Addr() net.Addr { return srv.rw.ln.Addr() }

// ReadonlyAddr is the read-only listener's address, nil when it is off.
func (srv *Server) ReadonlyAddr() net.Addr {
	if srv.ro == nil {
		return nil
	}
	return srv.ro.ln.Addr()
}

func (srv *Server) listeners() []*listener {
	if srv.ro == nil {
		return []*listener{srv.rw}
	}
	return []*listener{srv.rw, srv.ro}
}

// Run serves until ctx is done, then closes the listeners and every
// session and returns once all its goroutines have ended.
func (srv *Server) Run(ctx context.Context) error {
	if !srv.running.CompareAndSwap(false, true) {
		return ErrAlreadyRunning
	}
	srv.refreshRoute()
	stop := ctx.Done()
	// The parts run on until the drain of a clean stop is done (drain.go).
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	defer srv.drain.closeFirst()
	if p, err := newIdlePoller(); err != nil {
		srv.log.Info("idle sessions keep their goroutine", "err", err)
	} else {
		srv.idle = p
	}
	srv.startAdopted()
	fatal := make(chan error, 2)
	var loops sync.WaitGroup
	for _, l := range srv.listeners() {
		loops.Add(1)
		srv.handover.accepting.Add(1)
		go func() {
			defer loops.Done()
			defer srv.handover.accepting.Done()
			if err := srv.acceptLoop(ctx, l); err != nil {
				fatal <- err
			}
		}()
	}
	loops.Add(1)
	go func() {
		defer loops.Done()
		srv.routeLoop(ctx)
	}()
	loops.Add(1)
	go func() {
		defer loops.Done()
		srv.hygieneLoop(ctx)
	}()
	if srv.cfg.Multiplex {
		loops.Add(1)
		go func() {
			defer loops.Done()
			srv.authCheckLoop(ctx)
		}()
		loops.Add(1)
		go func() {
			defer loops.Done()
			srv.stallCheckLoop(ctx)
		}()
	}
	if srv.idle != nil {
		loops.Add(1)
		go func() {
			defer loops.Done()
			srv.parkLoop(ctx.Done())
		}()
	}
	if srv.tls != nil {
		loops.Add(1)
		go func() {
			defer loops.Done()
			srv.tlsReloadLoop(ctx)
		}()
	}
	var err error
	select {
	case <-stop:
		srv.runDrain()
	case err = <-fatal:
	case <-srv.handover.done:
	}
	cancel()
	for _, l := range srv.listeners() {
		_ = l.ln.Close()
	}
	srv.mu.Lock()
	srv.stopping = true
	for s := range srv.sessions {
		s.shutdown()
	}
	srv.mu.Unlock()
	loops.Wait()
	srv.wg.Wait()
	if srv.idle != nil {
		srv.idle.close()
	}
	srv.closeMux()
	return err
}

func (srv *Server) acceptLoop(ctx context.Context, l *listener) error {
	for {
		c, err := l.ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			srv.log.Warn("accept failed", "listener", l.name, "err", err)
			select {
			case <-time.After(50 * time.Millisecond):
				continue
			case <-ctx.Done():
				return nil
			}
		}
		if l.cur.Add(1) > srv.maxClients() {
			l.cur.Add(-1)
			l.refused.Add(1)
			refuse(c, ReplyMaxClients)
			continue
		}
		if !srv.admit(c) {
			l.cur.Add(-1)
			l.refused.Add(1)
			srv.closed[closedMaxClientsPerIP].Add(1)
			refuse(c, ReplyMaxClientsPerIP)
			continue
		}
		for {
			p, n := l.peak.Load(), l.cur.Load()
			if n <= p || l.peak.CompareAndSwap(p, n) {
				break
			}
		}
		l.total.Add(1)
		if srv.tls != nil {
			srv.startTLSSession(ctx, l, c)
			continue
		}
		srv.prepareClient(c)
		s := newSession(srv, l, c, srv.nextID.Add(1))
		srv.mu.Lock()
		if srv.stopping {
			srv.mu.Unlock()
			l.cur.Add(-1)
			srv.leave(c)
			_ = c.Close()
			return nil
		}
		srv.sessions[s] = struct{}{}
		srv.wg.Add(1)
		srv.mu.Unlock()
		go s.serve()
	}
}

func (srv *Server) unregister(s *session) {
	srv.mu.Lock()
	delete(srv.sessions, s)
	srv.mu.Unlock()
	s.l.cur.Add(-1)
	srv.leave(s.client)
	s.guard.use.release()
	s.l.commands.Add(s.commands.Swap(0))
	s.l.bytesIn.Add(s.bytesIn.Swap(0))
	s.l.bytesOut.Add(s.bytesOut.Swap(0))
	s.l.errs.Add(s.errs.Swap(0))
}

// routeLoop follows the route source: every hint, and every second (a
// hint may be dropped).
func (srv *Server) routeLoop(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-srv.routes.RouteChanges():
		case <-t.C:
		}
		srv.refreshRoute()
	}
}

func (srv *Server) refreshRoute() {
	r := srv.routes.Route()
	if cur := srv.route.Load(); cur != nil && cur.Master == r.Master && cur.Replaced == r.Replaced && slices.Equal(cur.Replicas, r.Replicas) {
		if cur.Epoch != r.Epoch {
			cp := *cur
			cp.Epoch = r.Epoch
			srv.route.Store(&cp)
		}
		return
	}
	r.Replicas = slices.Clone(r.Replicas)
	srv.routeMu.Lock()
	srv.route.Store(&r)
	gen := srv.routeGen.Add(1)
	if r.Master != "" && r.Master != srv.lastMaster || r.Replaced != "" {
		srv.deposals = append(srv.deposals, deposal{gen: gen, master: r.Master, replaced: r.Replaced})
		if len(srv.deposals) > maxDeposals {
			srv.deposals = slices.Delete(srv.deposals, 0, len(srv.deposals)-maxDeposals)
		}
	}
	if r.Master != "" {
		srv.lastMaster = r.Master
	}
	srv.routeMu.Unlock()
	srv.log.Info("route changed", "master_addr", r.Master, "epoch", r.Epoch, "replicas", r.Replicas, "replaced", r.Replaced)
	srv.mu.Lock()
	sessions := make([]*session, 0, len(srv.sessions))
	for s := range srv.sessions {
		sessions = append(sessions, s)
	}
	srv.mu.Unlock()
	for _, s := range sessions {
		s.kick()
	}
	srv.pruneMux()
}

// deposal is a route change that named a master (every other one is
// deposed from then on) or a Replaced one.
type deposal struct {
	gen              uint64
	master, replaced string
}

// maxDeposals bounds Server.deposals; a session whose backend was checked
// before the oldest one kept counts as deposed (outcome unknown: safe).
const maxDeposals = 64

// deposedSince says whether a route change after generation gen named a
// master other than addr, or addr as Replaced: a reply addr sends now may
// be a write it ran after Sentinel replaced it, even when the current
// route names no master (writes paused for a later planned failover:
// chaos CI negative run, a partitioned master's in-flight RPUSH answered
// 4 s after the route moved to the new master, while the next planned
// failover paused writes).
func (srv *Server) deposedSince(gen uint64, addr string) bool {
	srv.routeMu.Lock()
	defer srv.routeMu.Unlock()
	if len(srv.deposals) == maxDeposals && srv.deposals[0].gen > gen+1 {
		return true // older changes forgotten
	}
	for _, d := range srv.deposals {
		if d.gen > gen && (d.master != "" && d.master != addr || d.replaced == addr) {
			return true
		}
	}
	return false
}

// WritingTo says where commands of the read-write listener may still
// reach a master: the route's master, or, while the route names none
// (writes paused for a planned failover), the server a session is still
// connected to, its commands queued, in flight or just answered; "" when
// none. A planned failover measures the old master's replication offset
// only once every proxy says "" here (node/failover.go): a route of ""
// alone does not stop a command already sent, or about to be sent by a
// session that checked the route just before it changed, and the old
// master may run it after the offset was read and acknowledge a write
// the promoted replica never gets (issue 13; TestWritingToWaitsForInFlight,
// TestDialAcrossWritePause).
// A session's check of the route and its queuing of a command are one
// step under its lock; once routeGen moved, no session sends to a server
// the route no longer names; so a session seen here without a connection
// to the old master sends it nothing more.
func (srv *Server) WritingTo() string {
	srv.routeMu.Lock()
	r := srv.route.Load()
	srv.routeMu.Unlock()
	if r != nil && r.Master != "" {
		return r.Master
	}
	srv.mu.Lock()
	sessions := make([]*session, 0, len(srv.sessions))
	for s := range srv.sessions {
		if !s.l.readonly {
			sessions = append(sessions, s)
		}
	}
	srv.mu.Unlock()
	for _, s := range sessions {
		s.mu.Lock()
		be := s.be
		s.mu.Unlock()
		if be != nil {
			return be.addr
		}
	}
	return ""
}

// target is where a session should be connected now ("" none).
func (srv *Server) target(s *session) string {
	r := srv.route.Load()
	if r == nil {
		return ""
	}
	if !s.l.readonly {
		return r.Master
	}
	if p := srv.settings().PreferReplica; p != "" && slices.Contains(r.Replicas, p) {
		return p
	}
	if len(r.Replicas) > 0 {
		return r.Replicas[s.id%uint64(len(r.Replicas))]
	}
	return r.Master
}

// valid says whether a session connected to addr may stay there.
func (srv *Server) valid(s *session, addr string) bool {
	r := srv.route.Load()
	if r == nil || addr == "" {
		return false
	}
	if !s.l.readonly {
		return addr == r.Master
	}
	if len(r.Replicas) > 0 {
		return slices.Contains(r.Replicas, addr)
	}
	return addr == r.Master
}

// ClientConn is one client connection's two ends.
type ClientConn struct {
	Local, Remote netip.AddrPort
}

// CloseClientsOn ends every client session whose connection was accepted
// on address ip and returns their ends. The node calls it for a VIP that
// left this host: the kernel can no longer send from that address, so
// these connections are dead, and their clients are told (vip.OnGone).
func (srv *Server) CloseClientsOn(ip netip.Addr) []ClientConn {
	ip = ip.Unmap()
	var out []ClientConn
	var gone []*session
	srv.mu.Lock()
	for s := range srv.sessions {
		local, ok := tcpAddrPort(s.client.LocalAddr())
		if !ok || local.Addr().Unmap() != ip {
			continue
		}
		remote, ok := tcpAddrPort(s.client.RemoteAddr())
		if !ok {
			continue
		}
		out = append(out, ClientConn{Local: local, Remote: remote})
		gone = append(gone, s)
	}
	srv.mu.Unlock()
	for _, s := range gone {
		s.shutdown()
	}
	return out
}

func tcpAddrPort(a net.Addr) (netip.AddrPort, bool) {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return netip.AddrPort{}, false
	}
	return ta.AddrPort(), true
}
