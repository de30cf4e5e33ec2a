package vip

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Exported errors; the errors returned by New and Run wrap them.
var (
	// ErrPermission: the kernel refused to change addresses or open a raw
	// socket. The text says how to grant the capabilities.
	ErrPermission = errors.New("operation not permitted: redhaven needs CAP_NET_ADMIN (to add and remove the VIP) " +
		"and CAP_NET_RAW (to send gratuitous ARP / neighbour advertisements); " +
		"add `AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW` (and the same to CapabilityBoundingSet if set) " +
		"to the [Service] section of the systemd unit, or run as root")
	// ErrUnknownInterface: vip.interface names no link on this host.
	ErrUnknownInterface = errors.New("no such network interface (see `ip link show`)")
	// ErrUnsupported: mode netlink on an operating system other than Linux.
	ErrUnsupported = errors.New("vip.mode netlink is supported on Linux only")
)

// permErr adds how to grant the capabilities to a permission error.
func permErr(err error) error {
	if err != nil && (errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES)) {
		return fmt.Errorf("%w: %w", ErrPermission, err)
	}
	return err
}

// Status is a snapshot of the manager's state.
type Status struct {
	Mode      string // ModeNetlink or ModeNone
	Address   string // "10.0.0.100/24", "" when none configured
	Interface string
	// Desired is the last value given to SetDesired.
	Desired bool
	// Holding: the address was on the interface when last looked at.
	// Always false in mode none.
	Holding bool
	// Since is when Holding last changed (or when the manager was made).
	Since time.Time
	// LastAnnounce is when the last gratuitous ARP / neighbour
	// advertisement was sent; zero if never (or on loopback).
	LastAnnounce time.Time
	// LastError is the error of the latest attempt to reach the desired
	// state; empty once an attempt succeeded.
	LastError string
	// Conflict is the hardware address of another host that answered an
	// ARP probe for the VIP before the last acquisition ("" if none).
	Conflict string
	// WaitingForConflict: the address is wanted, but another host still
	// answers for it and Desire.WaitConflictUntil has not passed.
	WaitingForConflict bool
}

// Desire is what the caller wants of the address (Want).
type Desire struct {
	// Hold: the address should be on this host.
	Hold bool
	// Until, when set, ends Hold at that time (this host's monotonic
	// clock) even if no newer Desire comes: the VIP lease's end. The
	// manager removes the address then by itself.
	Until time.Time
	// Probe: before adding an address that is not here, ask (ARP probe,
	// vip.arp_probe long) whether another host still answers for it.
	Probe bool
	// WaitConflictUntil: if the probe is answered, do not add the address
	// before this time (the other host's copy expires by its lifetime),
	// probing again meanwhile and adding as soon as nobody answers. Zero:
	// add it anyway and log the conflict.
	WaitConflictUntil time.Time
}

// wants reports whether d asks for the address at now.
func (d Desire) wants(now time.Time) bool {
	return d.Hold && (d.Until.IsZero() || now.Before(d.Until))
}

// system is the OS side: the address on the link, and its announcement.
// One goroutine (Run's) uses it.
type system interface {
	// present reports whether the VIP's IP is on the link.
	present() (bool, error)
	// add puts the address on the link, or renews its lifetime.
	add() error
	// remove takes every copy of the VIP's IP off the link.
	remove() error
	// probe asks (for up to d) whether another host answers for the VIP
	// and returns its hardware address, or nil (ARP probes for IPv4,
	// neighbour solicitations for IPv6).
	probe(d time.Duration) (net.HardwareAddr, error)
	// announce sends one gratuitous ARP request+reply (IPv4) or unsolicited
	// neighbour advertisement (IPv6); sent is false where nothing is
	// announced (loopback, links without a hardware address).
	announce() (sent bool, err error)
	// release drops announcement sockets (after the address is removed).
	release()
	// tickler opens what sends tickle ACKs (tickle.go), in the system's
	// network namespace.
	tickler() (tickleSender, error)
	close()
}

// tickleSender sends tickle ACKs; any goroutine may use it.
type tickleSender interface {
	send(conns []Conn) error
	close()
}

// Manager holds (or not) the virtual IP as told by SetDesired. It is the
// mechanism only: the policy of who should hold the address is the
// caller's.
type Manager struct {
	cfg    Config
	mode   string
	prefix netip.Prefix
	logger *slog.Logger
	// newSys opens the OS side, in Run.
	newSys func() (system, error)

	desire  atomic.Pointer[Desire]
	hint    chan struct{}
	started atomic.Bool
	// keep: leave the address on the link at shutdown (KeepOnStop).
	keep atomic.Bool
	// onGone lists and ends the connections still open on the address
	// (OnGone); nil: none.
	onGone func() []Conn

	mu sync.Mutex
	st Status
}

// New validates cfg, checks that the interface exists and that the
// process has the capabilities it needs (mode netlink), and returns a
// Manager that starts with no desire to hold the address. It starts
// nothing; Run does.
func New(cfg Config, logger *slog.Logger) (*Manager, error) {
	return newManager(cfg, logger, func(cfg Config, prefix netip.Prefix) (func() (system, error), error) {
		return openSystem(cfg, prefix, nil)
	})
}

// enterFunc moves the calling goroutine into the network namespace the
// manager works in, locked to its thread, until leave is called (tests).
type enterFunc func() (leave func(), err error)

// opener checks the OS side at New and returns the function that opens it
// in Run (openSystem, or a fake in tests).
type opener func(cfg Config, prefix netip.Prefix) (func() (system, error), error)

func newManager(cfg Config, logger *slog.Logger, open opener) (*Manager, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	m := &Manager{
		cfg:    cfg,
		mode:   cfg.EffectiveMode(),
		logger: logger.With("component", "vip"),
		hint:   make(chan struct{}, 1),
	}
	m.desire.Store(&Desire{})
	if cfg.Address != "" {
		m.prefix, _ = ParseAddress(cfg.Address) // checked by Validate
	}
	m.st = Status{Mode: m.mode, Interface: cfg.Interface, Since: time.Now()}
	if m.prefix.IsValid() {
		m.st.Address = m.prefix.String()
	}
	if m.mode == ModeNetlink {
		newSys, err := open(cfg, m.prefix)
		if err != nil {
			return nil, err
		}
		m.newSys = newSys
	}
	return m, nil
}

// SetDesired says whether this node should hold the address, with no end
// time; before adding it the manager probes (vip.arp_probe) and takes it
// even if another host answers (logged, Status.Conflict). It never blocks;
// Run acts on the latest value.
func (m *Manager) SetDesired(hold bool) {
	m.Want(Desire{Hold: hold, Probe: true})
}

// Want sets what the manager should do with the address (see Desire). It
// never blocks; Run acts on the latest value, and a Desire equal to the
// current one changes nothing.
func (m *Manager) Want(d Desire) {
	if cur := m.desire.Load(); cur != nil && *cur == d {
		return
	}
	m.desire.Store(&d)
	m.mu.Lock()
	m.st.Desired = d.Hold
	m.mu.Unlock()
	select {
	case m.hint <- struct{}{}:
	default:
	}
}

// OnGone sets the function that lists, and ends, the connections still
// open on the address: the proxy's client connections accepted on the
// VIP. When the address is neither on this host nor wanted (released,
// removed as stale, expired by its lifetime), the manager calls it (at
// once, then every vip.check_interval while it is not held) and tickles
// the clients of what it returns (tickle.go), so that a client whose
// connection died with the move learns it when the new holder has the
// address, not when its own timeout passes. Call before Run.
func (m *Manager) OnGone(f func() []Conn) { m.onGone = f }

// KeepOnStop makes Run leave the address on the link when it ends (no
// on_release): a hand-over restart, whose next process adopts it. The
// kernel lifetime still runs: the next process must renew it in time, or
// the address goes by itself.
func (m *Manager) KeepOnStop() { m.keep.Store(true) }

// Holding reports whether the address was on the interface when last
// looked at. Always false in mode none.
func (m *Manager) Holding() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.st.Holding
}

// Status returns a snapshot of the manager's state.
func (m *Manager) Status() Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.st
}

// Run holds or releases the address as desired until ctx ends: on every
// SetDesired and every check_interval it compares the desire with the
// addresses on the link, adds or removes the address, announces it, and
// runs the hooks. When ctx ends it removes the address (if there), runs
// on_release, waits for the hooks and returns. It returns an error only
// if the OS side cannot be opened at all, or the address cannot be removed
// at shutdown (tried three times). Run may be called once.
func (m *Manager) Run(ctx context.Context) error {
	if !m.started.CompareAndSwap(false, true) {
		return errors.New("vip: Run called twice")
	}
	if m.mode == ModeNone {
		m.logger.Info("vip mode none: no address managed")
		<-ctx.Done()
		return nil
	}
	sys, err := m.newSys()
	if err != nil {
		return err
	}
	defer sys.close()

	hooks := newHookRunner(m.cfg, m.prefix, m.logger)
	hooksDone := make(chan struct{})
	go func() {
		defer close(hooksDone)
		hooks.run()
	}()
	defer func() {
		hooks.stop()
		<-hooksDone
	}()

	l := loop{m: m, sys: sys, hooks: hooks}
	return l.run(ctx)
}

// loop is Run's state, used by Run's goroutine only.
type loop struct {
	m     *Manager
	sys   system
	hooks *hookRunner

	// session: this manager acquired the address and has not released it.
	session bool
	// lost: the address went missing during the session (logged once).
	lost bool
	// announcement schedule: left packets of the current burst; timer
	// fires for the next one.
	left     int
	announce *time.Timer
	// errs are the current faults by kind (address, announce); the last
	// logged text of each is kept to log each fault once.
	errs [2]string
	// wake fires when the desire's end (Until) or the next conflict
	// probe is due.
	wake *time.Timer
	// waiting: the last probe was answered and the desire says wait.
	waiting bool
	// ctx is Run's: it bounds the tickle goroutines.
	ctx context.Context
	// sawPresent: the address was on the link since the last gone episode
	// began (only then can connections have been accepted on it).
	sawPresent bool
}

func (l *loop) run(ctx context.Context) error {
	l.ctx = ctx
	cfg := l.m.cfg
	check := time.NewTicker(cfg.CheckInterval)
	defer check.Stop()
	l.announce = time.NewTimer(time.Hour)
	l.announce.Stop()
	defer l.announce.Stop()
	l.wake = time.NewTimer(time.Hour)
	l.wake.Stop()
	defer l.wake.Stop()

	l.round()
	for {
		select {
		case <-ctx.Done():
			return l.shutdown()
		case <-l.m.hint:
			l.round()
		case <-check.C:
			l.round()
		case <-l.wake.C:
			l.round()
		case <-l.announce.C:
			l.announceStep()
		}
	}
}

// conflictRetry is how often a wanted address that another host still
// answers for is probed again.
const conflictRetry = 100 * time.Millisecond

// round reconciles once and sets the wake timer for the desire's end or
// the next conflict probe, whichever comes first.
func (l *loop) round() {
	l.reconcile()
	d := *l.m.desire.Load()
	now := time.Now()
	var next time.Time
	if d.wants(now) && !d.Until.IsZero() {
		next = d.Until
	}
	if l.waiting && (next.IsZero() || now.Add(conflictRetry).Before(next)) {
		next = now.Add(conflictRetry)
	}
	l.wake.Stop()
	if !next.IsZero() {
		l.wake.Reset(max(next.Sub(now), 0))
	}
}

// reconcile compares the desire with the link and acts once.
func (l *loop) reconcile() {
	m := l.m
	d := *m.desire.Load()
	want := d.wants(time.Now())
	if !want && l.waiting {
		l.setWaiting(false)
	}
	present, err := l.sys.present()
	if err != nil {
		l.fail(errAddr, fmt.Errorf("list addresses on %s: %w", m.cfg.Interface, err))
		return
	}
	if present {
		l.sawPresent = true
	}
	switch {
	case want && !present:
		if l.session {
			if !l.lost {
				l.lost = true
				m.logger.Warn("vip removed from the interface by someone else, adding it back", "vip", m.prefix, "interface", m.cfg.Interface)
			}
		} else if d.Probe && m.cfg.ARPProbe > 0 {
			answered := l.probe()
			if *m.desire.Load() != d || !d.wants(time.Now()) {
				return // changed its mind during the probe; next round
			}
			if answered && time.Now().Before(d.WaitConflictUntil) {
				if !l.waiting {
					m.logger.Warn("vip still answered by another host; waiting for its copy to expire before taking it",
						"vip", m.prefix, "interface", m.cfg.Interface, "wait_until", time.Until(d.WaitConflictUntil).Round(time.Millisecond))
				}
				l.setWaiting(true)
				return
			}
		}
		l.setWaiting(false)
		if err := l.sys.add(); err != nil {
			l.setHolding(false)
			l.fail(errAddr, fmt.Errorf("add vip %s on %s: %w", m.prefix, m.cfg.Interface, err))
			return
		}
		l.lost = false
		l.acquired(false)
	case want && present:
		if !l.session {
			l.acquired(true)
		}
		l.setHolding(true)
		if m.cfg.Lifetime > 0 {
			// Renew the lifetime (adding it again replaces it).
			if err := l.sys.add(); err != nil {
				l.fail(errAddr, fmt.Errorf("renew vip %s on %s: %w", m.prefix, m.cfg.Interface, err))
				return
			}
		}
	case !want && present:
		if err := l.sys.remove(); err != nil {
			l.setHolding(true) // still there, whoever put it
			l.fail(errAddr, fmt.Errorf("remove vip %s from %s: %w", m.prefix, m.cfg.Interface, err))
			return
		}
		if l.session {
			l.released("released")
		} else {
			m.logger.Info("stale vip removed", "vip", m.prefix, "interface", m.cfg.Interface)
			l.setHolding(false)
		}
		l.gone()
	default: // !want && !present
		if l.session {
			l.released("released (already gone from the interface)")
		}
		l.setHolding(false)
		l.gone()
	}
	l.ok(errAddr)
}

// acquired starts a holding session (or resumes one after the address was
// put back): announce now, then on schedule; on_acquire for a new session.
func (l *loop) acquired(wasPresent bool) {
	m := l.m
	l.setHolding(true)
	l.left = m.cfg.ARPCount
	l.announce.Reset(0)
	if l.session {
		return
	}
	l.session = true
	if wasPresent {
		m.logger.Info("vip acquired (already on the interface)", "vip", m.prefix, "interface", m.cfg.Interface)
	} else {
		m.logger.Info("vip acquired", "vip", m.prefix, "interface", m.cfg.Interface)
	}
	l.hooks.enqueue(eventAcquire)
}

// released ends a holding session: stop announcing, on_release.
func (l *loop) released(msg string) {
	m := l.m
	l.session = false
	l.lost = false
	l.left = 0
	l.ok(errAnnounce) // no more announcements, no more announcement faults
	l.announce.Stop()
	l.sys.release()
	l.setHolding(false)
	m.logger.Info("vip "+msg, "vip", m.prefix, "interface", m.cfg.Interface)
	l.hooks.enqueue(eventRelease)
}

// gone runs when the address is neither here nor wanted. The first time
// after it was seen here, it starts one episode: after tickleSchedule[0]
// (an address back here by then, as after a brief flap, keeps its
// connections), OnGone ends the connections still open on it, and their
// clients are tickled on tickleSchedule while the address stays away.
func (l *loop) gone() {
	m := l.m
	if m.onGone == nil || !l.sawPresent {
		return
	}
	l.sawPresent = false
	t, err := l.sys.tickler() // here: in the system's network namespace
	if err != nil {
		m.logger.Warn("vip gone: cannot tell the clients of its connections; they find out when they next send or time out",
			"vip", m.prefix, "err", err)
		t = nil
	}
	ctx := l.ctx
	go func() {
		if t != nil {
			defer t.close()
		}
		start := time.Now()
		var conns []Conn
		for i, at := range tickleSchedule {
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Until(start.Add(at))):
			}
			if m.Holding() {
				return // back on this host: its connections live on
			}
			if i == 0 {
				if conns = m.onGone(); len(conns) == 0 {
					return
				}
				m.logger.Info("vip gone from this host: closed the client connections accepted on it; tickling their clients so they reconnect to the new holder",
					"vip", m.prefix, "connections", len(conns))
			}
			if t == nil {
				return
			}
			if err := t.send(conns); err != nil && i == 0 {
				m.logger.Warn("vip gone: tickle ACKs not sent", "vip", m.prefix, "err", err)
			}
		}
	}()
}

// probe asks whether another host answers for the address, logs it and
// reports whether one did. A failed probe counts as answered (the caller
// then waits for WaitConflictUntil if it has one): not knowing is not
// proof that the other copy is gone.
func (l *loop) probe() (answered bool) {
	m := l.m
	mac, err := l.sys.probe(m.cfg.ARPProbe)
	if err != nil {
		if !l.waiting {
			m.logger.Warn("vip conflict probe failed", "vip", m.prefix, "interface", m.cfg.Interface, "err", err)
		}
		return true
	}
	conflict := ""
	if mac != nil {
		conflict = mac.String()
		if !l.waiting {
			m.logger.Warn("vip conflict: another host answers for the vip",
				"vip", m.prefix, "interface", m.cfg.Interface, "other_mac", conflict)
		}
	}
	m.mu.Lock()
	m.st.Conflict = conflict
	m.mu.Unlock()
	return mac != nil
}

func (l *loop) setWaiting(w bool) {
	l.waiting = w
	l.m.mu.Lock()
	l.m.st.WaitingForConflict = w
	l.m.mu.Unlock()
}

// announceStep sends one packet of the current burst and schedules the
// next one, or the next burst after arp_repeat.
func (l *loop) announceStep() {
	m := l.m
	if !l.session {
		return
	}
	sent, err := l.sys.announce()
	if err != nil {
		l.fail(errAnnounce, fmt.Errorf("announce vip %s on %s: %w", m.prefix, m.cfg.Interface, err))
	} else {
		l.ok(errAnnounce)
		if sent {
			m.mu.Lock()
			m.st.LastAnnounce = time.Now()
			m.mu.Unlock()
		}
	}
	l.left--
	if l.left > 0 {
		l.announce.Reset(m.cfg.ARPInterval)
		return
	}
	l.left = m.cfg.ARPCount
	l.announce.Reset(m.cfg.ARPRepeat - time.Duration(m.cfg.ARPCount-1)*m.cfg.ARPInterval)
}

// shutdown removes the address first, then queues on_release; or, after
// KeepOnStop, leaves it for the next process.
func (l *loop) shutdown() error {
	m := l.m
	if m.keep.Load() {
		if l.session {
			m.logger.Info("vip left on the interface for the next process", "vip", m.prefix, "interface", m.cfg.Interface)
		}
		return nil
	}
	var err error
	for attempt := range 3 { // a transient netlink fault must not leave it behind
		if attempt > 0 {
			time.Sleep(100 * time.Millisecond)
		}
		var present bool
		present, err = l.sys.present()
		if err == nil && present {
			err = l.sys.remove()
		}
		if err == nil {
			break
		}
	}
	if err != nil {
		err = fmt.Errorf("remove vip %s from %s at shutdown: %w", m.prefix, m.cfg.Interface, err)
		m.mu.Lock()
		m.st.LastError = err.Error()
		m.mu.Unlock()
		return err
	}
	if l.session {
		l.released("released (shutdown)")
	}
	l.setHolding(false)
	return nil
}

func (l *loop) setHolding(h bool) {
	m := l.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.st.Holding != h {
		m.st.Holding = h
		m.st.Since = time.Now()
	}
}

// Kinds of faults, tracked apart so that a good round of one kind does
// not hide a fault of the other.
const (
	errAddr = iota
	errAnnounce
)

// fail records a fault to be retried; each distinct one is logged once.
func (l *loop) fail(kind int, err error) {
	msg := err.Error()
	if msg != l.errs[kind] {
		l.m.logger.Warn("vip fault, retrying", "vip", l.m.prefix, "interface", l.m.cfg.Interface, "err", err)
	}
	l.errs[kind] = msg
	l.publishErr()
}

// ok clears a kind of fault after a successful round.
func (l *loop) ok(kind int) {
	if l.errs[kind] == "" {
		return
	}
	l.errs[kind] = ""
	l.publishErr()
}

func (l *loop) publishErr() {
	msg := l.errs[errAddr]
	if msg == "" {
		msg = l.errs[errAnnounce]
	}
	l.m.mu.Lock()
	l.m.st.LastError = msg
	l.m.mu.Unlock()
}
