package vip

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redhaven/redhaven/e2e/testutil"
)

// fakeSys is an in-memory link: the unit tests drive the loop with it.
type fakeSys struct {
	mu        sync.Mutex
	addr      bool
	adds      int
	renews    int
	removes   int
	announces int
	probes    int
	addErr    error
	removeErr error
	probeMAC  net.HardwareAddr
	marker    string // created on remove, so hooks can tell it came first
	released  int
	closed    bool
	tickles   [][]Conn // what each tickle send carried
}

func (f *fakeSys) tickler() (tickleSender, error) { return fakeTickler{f}, nil }

type fakeTickler struct{ f *fakeSys }

func (t fakeTickler) send(conns []Conn) error {
	t.f.mu.Lock()
	defer t.f.mu.Unlock()
	t.f.tickles = append(t.f.tickles, conns)
	return nil
}

func (t fakeTickler) close() {}

func (f *fakeSys) present() (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.addr, nil
}

func (f *fakeSys) add() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.addErr != nil {
		return f.addErr
	}
	if f.addr {
		f.renews++
	} else {
		f.adds++
	}
	f.addr = true
	if f.marker != "" {
		os.Remove(f.marker)
	}
	return nil
}

func (f *fakeSys) remove() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.removeErr != nil {
		return f.removeErr
	}
	f.addr = false
	f.removes++
	if f.marker != "" {
		if err := os.WriteFile(f.marker, nil, 0o600); err != nil {
			return err
		}
	}
	return nil
}

func (f *fakeSys) probe(time.Duration) (net.HardwareAddr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.probes++
	return f.probeMAC, nil
}

func (f *fakeSys) announce() (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.announces++
	return true, nil
}

func (f *fakeSys) release() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.released++
}

func (f *fakeSys) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
}

// get reads a field under the lock.
func get[T any](f *fakeSys, fn func(*fakeSys) T) T {
	f.mu.Lock()
	defer f.mu.Unlock()
	return fn(f)
}

// logBuffer collects log output for assertions.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// testConfig is a netlink config with short timings.
func testConfig() Config {
	c := DefaultConfig()
	c.Mode = ModeNetlink
	c.Address = "10.0.0.100/24"
	c.Interface = "eth0"
	c.ARPCount = 2
	c.ARPInterval = 10 * time.Millisecond
	c.ARPRepeat = 100 * time.Millisecond
	c.CheckInterval = 50 * time.Millisecond
	c.HookTimeout = 5 * time.Second
	return c
}

// running is a Manager whose Run runs in a goroutine until stop.
type running struct {
	*Manager
	logs   *logBuffer
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	err    error
}

// stop cancels Run and returns its error; it fails the test if Run does
// not return within 20s.
func (r *running) stop(t *testing.T) error {
	t.Helper()
	r.once.Do(func() {
		r.cancel()
		select {
		case r.err = <-r.done:
		case <-time.After(20 * time.Second):
			r.err = errors.New("Run did not return within 20s of cancel")
			t.Error(r.err)
		}
	})
	return r.err
}

func startManager(t *testing.T, cfg Config, open opener, setup ...func(*Manager)) *running {
	t.Helper()
	logs := &logBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	m, err := newManager(cfg, logger, open)
	if err != nil {
		t.Fatalf("newManager: %v", err)
	}
	for _, f := range setup {
		f(m)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{Manager: m, logs: logs, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- m.Run(ctx) }()
	t.Cleanup(func() {
		r.stop(t)
		if t.Failed() {
			t.Logf("manager log:\n%s", logs)
		}
	})
	return r
}

func startFake(t *testing.T, cfg Config, f *fakeSys) *running {
	return startManager(t, cfg, func(Config, netip.Prefix) (func() (system, error), error) {
		return func() (system, error) { return f, nil }, nil
	})
}

// hookConfig makes both hooks append a line with their environment (and
// whether the address had been removed before) to out.
func hookConfig(t *testing.T, cfg Config) (Config, string, string) {
	// Configuration variables (passwords) must not reach hooks: the hook
	// line fails if it sees this one.
	t.Setenv("REDHAVEN_SECRET", "hunter2")
	dir := t.TempDir()
	out := filepath.Join(dir, "hooks.log")
	marker := filepath.Join(dir, "removed")
	line := fmt.Sprintf(`test -z "$REDHAVEN_SECRET" || exit 9; echo "$REDHAVEN_VIP_EVENT $REDHAVEN_VIP_ADDRESS $REDHAVEN_VIP_PREFIX $REDHAVEN_VIP_INTERFACE removed=$(test -e %s && echo yes || echo no)" >> %s`, marker, out)
	cfg.OnAcquire = line
	cfg.OnRelease = line
	return cfg, out, marker
}

func readLines(path string) []string {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

const wait = 10 * time.Second

func TestRemovesStaleAddressAtStart(t *testing.T) {
	cfg, out, _ := hookConfig(t, testConfig())
	f := &fakeSys{addr: true}
	r := startFake(t, cfg, f)
	testutil.Eventually(t, wait, "stale address removed", func() bool { return !get(f, func(f *fakeSys) bool { return f.addr }) })
	if err := r.stop(t); err != nil {
		t.Fatalf("Run = %v", err)
	}
	if r.Holding() {
		t.Error("Holding() = true after removing a stale copy")
	}
	if lines := readLines(out); lines != nil {
		t.Errorf("hooks ran for a stale copy: %q", lines)
	}
	if !strings.Contains(r.logs.String(), "stale vip removed") {
		t.Errorf("no 'stale vip removed' in the log:\n%s", r.logs)
	}
	if !get(f, func(f *fakeSys) bool { return f.closed }) {
		t.Error("system not closed after Run")
	}
}

func TestAcquireAnnounceRelease(t *testing.T) {
	cfg, out, marker := hookConfig(t, testConfig())
	f := &fakeSys{marker: marker}
	r := startFake(t, cfg, f)

	r.SetDesired(true)
	testutil.Eventually(t, wait, "holding", r.Holding)
	if !get(f, func(f *fakeSys) bool { return f.addr }) {
		t.Fatal("Holding() but the address is not on the link")
	}
	testutil.Eventually(t, wait, "acquire hook", func() bool { return len(readLines(out)) == 1 })
	if got, want := readLines(out)[0], "acquire 10.0.0.100 10.0.0.100/24 eth0 removed=no"; got != want {
		t.Errorf("acquire hook saw %q, want %q", got, want)
	}
	// A burst, then re-announcements every arp_repeat.
	testutil.Eventually(t, wait, "re-announcements", func() bool { return get(f, func(f *fakeSys) int { return f.announces }) >= 3*cfg.ARPCount })
	st := r.Status()
	if !st.Desired || !st.Holding || st.LastAnnounce.IsZero() || st.LastError != "" || st.Mode != ModeNetlink ||
		st.Address != "10.0.0.100/24" || st.Interface != "eth0" || st.Conflict != "" {
		t.Errorf("Status() = %+v", st)
	}
	if p := get(f, func(f *fakeSys) int { return f.probes }); p != 1 {
		t.Errorf("probed %d times, want 1", p)
	}

	r.SetDesired(false)
	testutil.Eventually(t, wait, "released", func() bool { return !r.Holding() && !get(f, func(f *fakeSys) bool { return f.addr }) })
	testutil.Eventually(t, wait, "release hook", func() bool { return len(readLines(out)) == 2 })
	if got, want := readLines(out)[1], "release 10.0.0.100 10.0.0.100/24 eth0 removed=yes"; got != want {
		t.Errorf("release hook saw %q, want %q (the address must be removed before on_release)", got, want)
	}
	if get(f, func(f *fakeSys) int { return f.released }) == 0 {
		t.Error("announcement sockets not released")
	}
	// No announcements once released: over 3 repeat periods the count
	// stays put.
	n := get(f, func(f *fakeSys) int { return f.announces })
	for deadline := time.Now().Add(3 * cfg.ARPRepeat); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if m := get(f, func(f *fakeSys) int { return f.announces }); m != n {
			t.Fatalf("announced after release: %d -> %d", n, m)
		}
	}
	if err := r.stop(t); err != nil {
		t.Fatalf("Run = %v", err)
	}
}

// The connections still open on an address that left this host are
// ended and their clients tickled, on the schedule, also for a stale
// address removed at start; never while the address is held.
func TestGoneTicklesStrayConnections(t *testing.T) {
	f := &fakeSys{addr: true} // a stale copy: removed at start
	var calls atomic.Int32
	var open atomic.Bool // connections on the address, as the proxy would list them
	open.Store(true)
	conn := Conn{Local: netip.MustParseAddrPort("10.0.0.100:6380"), Remote: netip.MustParseAddrPort("10.0.0.7:40000")}
	r := startManager(t, testConfig(), func(Config, netip.Prefix) (func() (system, error), error) {
		return func() (system, error) { return f, nil }, nil
	}, func(m *Manager) {
		m.OnGone(func() []Conn {
			calls.Add(1)
			if open.Swap(false) { // the callee ends what it returns
				return []Conn{conn}
			}
			return nil
		})
	})
	tickles := func() int { return get(f, func(f *fakeSys) int { return len(f.tickles) }) }
	testutil.Eventually(t, wait, "the stray connection tickled", func() bool { return tickles() >= 2 })
	if got := get(f, func(f *fakeSys) []Conn { return f.tickles[0] }); len(got) != 1 || got[0] != conn {
		t.Fatalf("tickled %v, want [%v]", got, conn)
	}
	testutil.Eventually(t, 10*time.Second, "the whole schedule", func() bool { return tickles() == len(tickleSchedule) })

	r.SetDesired(true)
	testutil.Eventually(t, wait, "holding", r.Holding)
	open.Store(true)
	before := calls.Load()
	time.Sleep(5 * testConfig().CheckInterval)
	if calls.Load() != before {
		t.Fatal("OnGone called while the address is held")
	}
	r.SetDesired(false)
	testutil.Eventually(t, wait, "tickled after the release", func() bool { return tickles() > len(tickleSchedule) })
	testutil.Eventually(t, 10*time.Second, "the second schedule", func() bool { return tickles() == 2*len(tickleSchedule) })

	// A flap (the address back within tickleSchedule[0]) keeps the
	// connections: OnGone is not called.
	r.SetDesired(true)
	testutil.Eventually(t, wait, "holding", r.Holding)
	open.Store(true)
	before = calls.Load()
	r.SetDesired(false)
	testutil.Eventually(t, wait, "released", func() bool { return !r.Holding() })
	r.SetDesired(true)
	testutil.Eventually(t, wait, "holding again", r.Holding)
	time.Sleep(2 * tickleSchedule[0])
	if calls.Load() != before || !open.Load() {
		t.Fatal("a flap of the address ended its connections")
	}
}

func TestPutsBackAddressRemovedBySomeoneElse(t *testing.T) {
	cfg, out, _ := hookConfig(t, testConfig())
	f := &fakeSys{}
	r := startFake(t, cfg, f)
	r.SetDesired(true)
	testutil.Eventually(t, wait, "holding", r.Holding)

	f.mu.Lock()
	f.addr = false // `ip addr del` behind our back
	f.mu.Unlock()
	testutil.Eventually(t, wait, "address put back", func() bool { return get(f, func(f *fakeSys) int { return f.adds }) == 2 })
	testutil.Eventually(t, wait, "holding again", r.Holding)
	if err := r.stop(t); err != nil {
		t.Fatalf("Run = %v", err)
	}
	// One acquire (putting it back is not a new acquisition), one release
	// at shutdown.
	lines := readLines(out)
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "acquire ") || !strings.HasPrefix(lines[1], "release ") {
		t.Errorf("hooks ran %q, want one acquire then one release", lines)
	}
	if !strings.Contains(r.logs.String(), "vip removed from the interface by someone else") {
		t.Errorf("the put-back is not logged:\n%s", r.logs)
	}
}

func TestLifetimeIsRenewed(t *testing.T) {
	for _, lifetime := range []time.Duration{0, 2 * time.Second} {
		t.Run(lifetime.String(), func(t *testing.T) {
			cfg := testConfig()
			cfg.Lifetime = lifetime
			f := &fakeSys{}
			r := startFake(t, cfg, f)
			r.SetDesired(true)
			testutil.Eventually(t, wait, "holding", r.Holding)
			if lifetime == 0 {
				// Over 5 check intervals: no renewal of a permanent address.
				for deadline := time.Now().Add(5 * cfg.CheckInterval); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
					if n := get(f, func(f *fakeSys) int { return f.renews }); n != 0 {
						t.Fatalf("renewed a permanent address %d times", n)
					}
				}
				return
			}
			testutil.Eventually(t, wait, "renewals", func() bool { return get(f, func(f *fakeSys) int { return f.renews }) >= 3 })
		})
	}
}

func TestShutdownRemovesAddressThenRunsReleaseHook(t *testing.T) {
	cfg, out, marker := hookConfig(t, testConfig())
	f := &fakeSys{marker: marker}
	r := startFake(t, cfg, f)
	r.SetDesired(true)
	testutil.Eventually(t, wait, "holding", r.Holding)
	if err := r.stop(t); err != nil {
		t.Fatalf("Run = %v", err)
	}
	// Run waited for the hook: no polling needed.
	if get(f, func(f *fakeSys) bool { return f.addr }) {
		t.Fatal("address still on the link after Run returned")
	}
	lines := readLines(out)
	if len(lines) != 2 || lines[1] != "release 10.0.0.100 10.0.0.100/24 eth0 removed=yes" {
		t.Fatalf("hooks ran %q, want acquire then release after removal", lines)
	}
	if r.Holding() {
		t.Error("Holding() = true after shutdown")
	}
}

func TestShutdownReportsAFailedRemoval(t *testing.T) {
	f := &fakeSys{}
	r := startFake(t, testConfig(), f)
	r.SetDesired(true)
	testutil.Eventually(t, wait, "holding", r.Holding)
	f.mu.Lock()
	f.removeErr = errors.New("netlink timeout")
	f.mu.Unlock()
	err := r.stop(t)
	if err == nil || !strings.Contains(err.Error(), "remove vip 10.0.0.100/24 from eth0 at shutdown") || !strings.Contains(err.Error(), "netlink timeout") {
		t.Fatalf("Run = %v, want the failed removal", err)
	}
	if st := r.Status(); !st.Holding || st.LastError == "" {
		t.Errorf("Status() = %+v, want still holding with the error", st)
	}
}

func TestFaultsAreReportedAndRetried(t *testing.T) {
	f := &fakeSys{addErr: permErr(os.NewSyscallError("netlinkrib", syscall.EPERM))}
	r := startFake(t, testConfig(), f)
	r.SetDesired(true)
	testutil.Eventually(t, wait, "error in status", func() bool { return r.Status().LastError != "" })
	if st := r.Status(); st.Holding || !strings.Contains(st.LastError, "CAP_NET_ADMIN") || !strings.Contains(st.LastError, "add vip 10.0.0.100/24 on eth0") {
		t.Errorf("Status() = %+v, want not holding and an error naming CAP_NET_ADMIN", st)
	}
	f.mu.Lock()
	f.addErr = nil
	f.mu.Unlock()
	testutil.Eventually(t, wait, "holding after the fault cleared", func() bool { return r.Holding() && r.Status().LastError == "" })
	if c := strings.Count(r.logs.String(), "vip fault, retrying"); c != 1 {
		t.Errorf("the fault was logged %d times, want once:\n%s", c, r.logs)
	}
}

func TestConflictIsLoggedAndAddressTaken(t *testing.T) {
	other := net.HardwareAddr{0x02, 0, 0, 0, 0, 0x99}
	f := &fakeSys{probeMAC: other}
	r := startFake(t, testConfig(), f)
	r.SetDesired(true)
	testutil.Eventually(t, wait, "holding", r.Holding)
	if got := r.Status().Conflict; got != other.String() {
		t.Errorf("Status().Conflict = %q, want %q", got, other)
	}
	if !strings.Contains(r.logs.String(), "vip conflict") || !strings.Contains(r.logs.String(), other.String()) {
		t.Errorf("conflict not logged with the other MAC:\n%s", r.logs)
	}
}

func TestNoProbeWhenDisabled(t *testing.T) {
	cfg := testConfig()
	cfg.ARPProbe = 0
	f := &fakeSys{}
	r := startFake(t, cfg, f)
	r.SetDesired(true)
	testutil.Eventually(t, wait, "holding", r.Holding)
	if p := get(f, func(f *fakeSys) int { return f.probes }); p != 0 {
		t.Errorf("probed %d times with arp_probe 0", p)
	}
}

func TestFlappingDesireEndsInLastState(t *testing.T) {
	cfg, out, _ := hookConfig(t, testConfig())
	f := &fakeSys{}
	r := startFake(t, cfg, f)
	for i := range 41 {
		r.SetDesired(i%2 == 0) // ends with true
	}
	testutil.Eventually(t, wait, "holding", r.Holding)
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	lines := readLines(out)
	if len(lines) < 2 || len(lines)%2 != 0 {
		t.Fatalf("hooks ran %q: want acquire/release pairs", lines)
	}
	for i, l := range lines {
		want := "acquire "
		if i%2 == 1 {
			want = "release "
		}
		if !strings.HasPrefix(l, want) {
			t.Fatalf("hook %d was %q, want %q...: hooks must run in event order", i, l, want)
		}
	}
}

func TestHookFailureIsLogged(t *testing.T) {
	cfg := testConfig()
	cfg.OnAcquire = "echo no cloud today >&2; exit 3"
	r := startFake(t, cfg, &fakeSys{})
	r.SetDesired(true)
	testutil.Eventually(t, wait, "hook failure logged", func() bool {
		l := r.logs.String()
		return strings.Contains(l, "vip hook failed") && strings.Contains(l, "exit_code=3") && strings.Contains(l, "no cloud today")
	})
}

func TestModeNone(t *testing.T) {
	m, err := New(DefaultConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	m.SetDesired(true)
	st := m.Status()
	if st.Mode != ModeNone || !st.Desired || st.Holding || m.Holding() {
		t.Errorf("Status() = %+v, want mode none, desired, not holding", st)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run = %v", err)
		}
	case <-time.After(wait):
		t.Fatal("Run did not return")
	}
	if err := m.Run(context.Background()); err == nil {
		t.Error("second Run succeeded")
	}
}

func TestNewUnknownInterface(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("mode netlink is Linux only")
	}
	cfg := testConfig()
	cfg.Interface = "rhnosuch0"
	_, err := New(cfg, nil)
	if !errors.Is(err, ErrUnknownInterface) || !strings.Contains(err.Error(), `vip.interface: "rhnosuch0"`) {
		t.Fatalf("New = %v, want ErrUnknownInterface naming vip.interface rhnosuch0", err)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	cfg := testConfig()
	cfg.Address = "10.0.0.999/24"
	if _, err := New(cfg, nil); err == nil || !strings.Contains(err.Error(), "vip.address") {
		t.Fatalf("New = %v, want an error naming vip.address", err)
	}
}
