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
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
	"github.com/mdlayher/packet"
	"github.com/redhaven/redhaven/e2e/testutil"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Network-namespace tests: a holder namespace and a peer namespace joined
// by a veth pair; the Manager runs in the holder, the peer watches what
// goes over the wire and what its neighbour table learns. Root only.

var nsCounter atomic.Int32

// lab is two namespaces joined by a veth pair.
type lab struct {
	holder, peer     string // namespace names
	holderIf, peerIf string // veth ends
	holderMAC        net.HardwareAddr
	peerMAC          net.HardwareAddr
}

// requireNetns skips (or fails under REDHAVEN_REQUIRE=netns) unless we
// are root with a working `ip netns`.
func requireNetns(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		testutil.Require(t, "netns", "not root (network namespace tests need root)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		testutil.Require(t, "netns", "`ip` (iproute2) not on PATH")
	}
}

// ip runs `ip args...` and fails the test on error.
func ip(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// newLab creates the namespaces (removed in t.Cleanup, even on failure).
func newLab(t *testing.T) *lab {
	t.Helper()
	requireNetns(t)
	n := nsCounter.Add(1)
	pid := os.Getpid()
	l := &lab{
		holder:   fmt.Sprintf("rhtest-%d-%d-a", pid, n),
		peer:     fmt.Sprintf("rhtest-%d-%d-b", pid, n),
		holderIf: fmt.Sprintf("rh%da%d", pid%1000000, n),
		peerIf:   fmt.Sprintf("rh%db%d", pid%1000000, n),
	}
	for _, ns := range []string{l.holder, l.peer} {
		if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
			testutil.Require(t, "netns", fmt.Sprintf("ip netns add: %v: %s", err, out))
		}
		t.Cleanup(func() {
			if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
				t.Errorf("ip netns del %s: %v: %s", ns, err, out)
			}
		})
		ip(t, "-n", ns, "link", "set", "lo", "up")
	}
	ip(t, "link", "add", l.holderIf, "netns", l.holder, "type", "veth", "peer", "name", l.peerIf, "netns", l.peer)
	ip(t, "-n", l.holder, "link", "set", l.holderIf, "up")
	ip(t, "-n", l.peer, "link", "set", l.peerIf, "up")
	ip(t, "-n", l.holder, "addr", "add", "198.51.100.1/24", "dev", l.holderIf)
	ip(t, "-n", l.peer, "addr", "add", "198.51.100.2/24", "dev", l.peerIf)
	l.holderMAC = linkIn(t, l.holder, l.holderIf).HardwareAddr
	l.peerMAC = linkIn(t, l.peer, l.peerIf).HardwareAddr
	return l
}

// linkIn looks up an interface inside a namespace.
func linkIn(t *testing.T, ns, name string) *net.Interface {
	t.Helper()
	h, err := netns.GetFromName(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	nh, err := netlink.NewHandleAt(h)
	if err != nil {
		t.Fatal(err)
	}
	defer nh.Close()
	link, err := nh.LinkByName(name)
	if err != nil {
		t.Fatalf("link %s in %s: %v", name, ns, err)
	}
	return netInterface(link)
}

// enter returns the enterFunc for namespace ns: lock the goroutine to
// its thread and switch the thread's network namespace until leave.
func enter(ns string) enterFunc {
	return func() (func(), error) {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			return nil, err
		}
		target, err := netns.GetFromName(ns)
		if err != nil {
			orig.Close()
			runtime.UnlockOSThread()
			return nil, err
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			orig.Close()
			runtime.UnlockOSThread()
			return nil, err
		}
		return func() {
			defer orig.Close()
			if err := netns.Set(orig); err != nil {
				return // keep the thread locked: it ends with its goroutine
			}
			runtime.UnlockOSThread()
		}, nil
	}
}

// inNS runs fn with the calling goroutine in namespace ns.
func inNS(t *testing.T, ns string, fn func()) {
	t.Helper()
	leave, err := enter(ns)()
	if err != nil {
		t.Fatalf("enter %s: %v", ns, err)
	}
	defer leave()
	fn()
}

// startIn runs a real Manager inside namespace ns.
func startIn(t *testing.T, ns string, cfg Config) *running {
	return startManager(t, cfg, func(cfg Config, prefix netip.Prefix) (func() (system, error), error) {
		return openSystem(cfg, prefix, enter(ns))
	})
}

// capture opens a packet socket for EtherType on ifName in namespace ns.
func capture(t *testing.T, ns, ifName string, etherType ethernet.EtherType) *packet.Conn {
	t.Helper()
	ifi := linkIn(t, ns, ifName)
	var c *packet.Conn
	var err error
	inNS(t, ns, func() { c, err = packet.Listen(ifi, packet.Raw, int(etherType), nil) })
	if err != nil {
		t.Fatalf("capture in %s: %v", ns, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// readUntil reads frames from c until match returns true or timeout.
func readUntil(t *testing.T, c *packet.Conn, timeout time.Duration, what string, match func([]byte) bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	if err := c.SetReadDeadline(deadline); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2048)
	for i := 0; i < 100000; i++ {
		n, _, err := c.ReadFrom(buf)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			break
		}
		if err != nil {
			t.Fatalf("capture: %v", err)
		}
		if match(buf[:n]) {
			return
		}
	}
	t.Fatalf("timed out after %v waiting for %s", timeout, what)
}

// addrOn lists the addresses of dev in ns as `ip -o addr show` prints them.
func addrOn(t *testing.T, ns, dev string) string {
	return ip(t, "-n", ns, "-o", "addr", "show", "dev", dev)
}

// lineWith returns the first line of s that contains sub, or "".
func lineWith(s, sub string) string {
	for _, line := range strings.Split(s, "\n") {
		if strings.Contains(line, sub) {
			return line
		}
	}
	return ""
}

func netnsConfig(ifName, address string) Config {
	c := testConfig()
	c.Interface = ifName
	c.Address = address
	c.ARPCount = 3
	c.ARPInterval = 20 * time.Millisecond
	c.ARPRepeat = 500 * time.Millisecond
	c.CheckInterval = 100 * time.Millisecond
	return c
}

func TestNetnsIPv4(t *testing.T) {
	l := newLab(t)
	const vip = "198.51.100.100"
	cfg, out, _ := hookConfig(t, netnsConfig(l.holderIf, vip+"/24"))
	cfg.Label = l.holderIf + ":v"

	// A stale copy (say, from before a crash), and a peer whose cache
	// still points the VIP at some other host.
	ip(t, "-n", l.holder, "addr", "add", vip+"/24", "dev", l.holderIf)
	ip(t, "-n", l.peer, "neigh", "replace", vip, "lladdr", "02:00:00:00:00:01", "dev", l.peerIf, "nud", "stale")
	arps := capture(t, l.peer, l.peerIf, ethernet.EtherTypeARP)

	r := startIn(t, l.holder, cfg)
	testutil.Eventually(t, wait, "stale copy removed at start", func() bool { return !strings.Contains(addrOn(t, l.holder, l.holderIf), vip) })
	if r.Holding() {
		t.Fatal("Holding() before SetDesired(true)")
	}

	r.SetDesired(true)
	testutil.Eventually(t, wait, "address on the holder", func() bool {
		return strings.Contains(addrOn(t, l.holder, l.holderIf), vip+"/24")
	})
	if a := addrOn(t, l.holder, l.holderIf); !strings.Contains(a, cfg.Label) {
		t.Errorf("label %q missing: %s", cfg.Label, a)
	}
	testutil.Eventually(t, wait, "Holding()", r.Holding)

	// The peer sees a gratuitous request and reply from the holder's MAC.
	var sawRequest, sawReply bool
	readUntil(t, arps, wait, "gratuitous ARP request and reply on the peer", func(b []byte) bool {
		var f ethernet.Frame
		var p arp.Packet
		if f.UnmarshalBinary(b) != nil || p.UnmarshalBinary(f.Payload) != nil {
			return false
		}
		if p.SenderIP != netip.MustParseAddr(vip) || p.TargetIP != p.SenderIP ||
			!bytes.Equal(p.SenderHardwareAddr, l.holderMAC) || !bytes.Equal(f.Destination, ethernet.Broadcast) {
			return false
		}
		switch p.Operation {
		case arp.OperationRequest:
			sawRequest = true
		case arp.OperationReply:
			sawReply = true
		}
		return sawRequest && sawReply
	})
	// ...and its neighbour cache follows without a flush.
	testutil.Eventually(t, wait, "peer neighbour entry for the VIP points at the holder", func() bool {
		return strings.Contains(ip(t, "-n", l.peer, "neigh", "show", vip, "dev", l.peerIf), l.holderMAC.String())
	})
	if st := r.Status(); st.LastAnnounce.IsZero() || st.LastError != "" || st.Conflict != "" {
		t.Errorf("Status() = %+v", st)
	}

	// Someone deletes it: it is back within a few check intervals.
	ip(t, "-n", l.holder, "addr", "del", vip+"/24", "dev", l.holderIf)
	testutil.Eventually(t, 5*time.Second, "address put back", func() bool {
		return strings.Contains(addrOn(t, l.holder, l.holderIf), vip+"/24")
	})

	r.SetDesired(false)
	testutil.Eventually(t, wait, "address removed", func() bool { return !strings.Contains(addrOn(t, l.holder, l.holderIf), vip) })
	testutil.Eventually(t, wait, "not Holding()", func() bool { return !r.Holding() })
	testutil.Eventually(t, wait, "release hook", func() bool { return len(readLines(out)) == 2 })
	want := []string{
		fmt.Sprintf("acquire %s %s/24 %s removed=no", vip, vip, l.holderIf),
		fmt.Sprintf("release %s %s/24 %s removed=no", vip, vip, l.holderIf),
	}
	if got := readLines(out); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("hooks ran\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// Held again, then shutdown: gone by the time Run returns.
	r.SetDesired(true)
	testutil.Eventually(t, wait, "address back", func() bool { return strings.Contains(addrOn(t, l.holder, l.holderIf), vip+"/24") })
	if err := r.stop(t); err != nil {
		t.Fatalf("Run = %v", err)
	}
	if a := addrOn(t, l.holder, l.holderIf); strings.Contains(a, vip) {
		t.Fatalf("address still there after Run returned: %s", a)
	}
	if !strings.Contains(addrOn(t, l.holder, l.holderIf), "198.51.100.1/24") {
		t.Error("the interface's own address was removed too")
	}
}

func TestNetnsConflict(t *testing.T) {
	l := newLab(t)
	const vip = "198.51.100.100"
	// The peer already uses the VIP: it answers our probe.
	ip(t, "-n", l.peer, "addr", "add", vip+"/24", "dev", l.peerIf)
	cfg := netnsConfig(l.holderIf, vip+"/24")
	cfg.ARPProbe = 500 * time.Millisecond
	r := startIn(t, l.holder, cfg)
	r.SetDesired(true)
	testutil.Eventually(t, wait, "Holding()", r.Holding)
	if got := r.Status().Conflict; got != l.peerMAC.String() {
		t.Errorf("Status().Conflict = %q, want the peer's MAC %s", got, l.peerMAC)
	}
	if !strings.Contains(r.logs.String(), "vip conflict") {
		t.Errorf("conflict not logged:\n%s", r.logs)
	}
	if !strings.Contains(addrOn(t, l.holder, l.holderIf), vip+"/24") {
		t.Error("address not taken despite the conflict")
	}
}

func TestNetnsNoConflict(t *testing.T) {
	l := newLab(t)
	cfg := netnsConfig(l.holderIf, "198.51.100.100/24")
	cfg.ARPProbe = 300 * time.Millisecond
	r := startIn(t, l.holder, cfg)
	r.SetDesired(true)
	testutil.Eventually(t, wait, "Holding()", r.Holding)
	if got := r.Status().Conflict; got != "" {
		t.Errorf("Status().Conflict = %q with nobody else on the VIP", got)
	}
}

func TestNetnsIPv6(t *testing.T) {
	l := newLab(t)
	const vip = "2001:db8::100"
	nas := capture(t, l.peer, l.peerIf, ethernet.EtherTypeIPv6)
	r := startIn(t, l.holder, netnsConfig(l.holderIf, vip+"/64"))
	r.SetDesired(true)
	testutil.Eventually(t, wait, "address on the holder", func() bool {
		line := lineWith(ip(t, "-n", l.holder, "-o", "-6", "addr", "show", "dev", l.holderIf), vip+"/64")
		return line != "" && !strings.Contains(line, "tentative") // added without DAD: usable at once
	})
	readUntil(t, nas, wait, "unsolicited neighbour advertisement with override on the peer", func(b []byte) bool {
		var f ethernet.Frame
		if f.UnmarshalBinary(b) != nil || len(f.Payload) < 40 || f.Payload[6] != 58 {
			return false
		}
		src, _ := netip.AddrFromSlice(f.Payload[8:24])
		dst, _ := netip.AddrFromSlice(f.Payload[24:40])
		m, err := ndp.ParseMessage(f.Payload[40:])
		if err != nil {
			return false
		}
		na, ok := m.(*ndp.NeighborAdvertisement)
		if !ok || !na.Override || na.Solicited || na.TargetAddress != netip.MustParseAddr(vip) ||
			src != netip.MustParseAddr(vip) || dst != allNodes || f.Payload[7] != 255 {
			return false
		}
		for _, o := range na.Options {
			if lla, ok := o.(*ndp.LinkLayerAddress); ok && lla.Direction == ndp.Target && bytes.Equal(lla.Addr, l.holderMAC) {
				return true
			}
		}
		return false
	})
	if st := r.Status(); st.LastError != "" {
		t.Errorf("Status().LastError = %q", st.LastError)
	}
	if err := r.stop(t); err != nil {
		t.Fatalf("Run = %v", err)
	}
	if a := ip(t, "-n", l.holder, "-o", "-6", "addr", "show", "dev", l.holderIf); strings.Contains(a, vip) {
		t.Fatalf("address still there after Run returned: %s", a)
	}
}

func TestNetnsLoopback(t *testing.T) {
	l := newLab(t)
	const vip = "127.0.0.100"
	r := startIn(t, l.holder, netnsConfig("lo", vip+"/32"))
	r.SetDesired(true)
	testutil.Eventually(t, wait, "address on lo", func() bool { return strings.Contains(addrOn(t, l.holder, "lo"), vip+"/32") })
	testutil.Eventually(t, wait, "Holding()", r.Holding)
	// Let at least one announcement round pass: nothing is sent, no error.
	testutil.Eventually(t, wait, "a check round", func() bool { return strings.Contains(r.logs.String(), "vip acquired") })
	if st := r.Status(); !st.LastAnnounce.IsZero() || st.LastError != "" {
		t.Errorf("Status() = %+v, want no announcement and no error on loopback", st)
	}
	if err := r.stop(t); err != nil {
		t.Fatalf("Run = %v", err)
	}
	if strings.Contains(addrOn(t, l.holder, "lo"), vip) {
		t.Fatal("address still on lo after Run returned")
	}
}

func TestNetnsUnknownInterface(t *testing.T) {
	l := newLab(t)
	cfg := netnsConfig("rhnosuch0", "198.51.100.100/24")
	_, err := newManager(cfg, nil, func(cfg Config, prefix netip.Prefix) (func() (system, error), error) {
		return openSystem(cfg, prefix, enter(l.holder))
	})
	if !errors.Is(err, ErrUnknownInterface) || !strings.Contains(err.Error(), "rhnosuch0") {
		t.Fatalf("newManager = %v, want ErrUnknownInterface naming rhnosuch0", err)
	}
}

// helperEnv, when set, makes TestNetnsHelperProcess run a Manager that
// holds the VIP until killed (see TestNetnsKill9AddressExpires).
const helperEnv = "RHVIP_TEST_HELPER"

func TestNetnsHelperProcess(t *testing.T) {
	spec := os.Getenv(helperEnv) // "interface address lifetime"
	if spec == "" {
		t.Skip("helper process of TestNetnsKill9AddressExpires")
	}
	f := strings.Fields(spec)
	cfg := netnsConfig(f[0], f[1])
	cfg.Lifetime, _ = time.ParseDuration(f[2])
	cfg.CheckInterval = 200 * time.Millisecond
	m, err := New(cfg, slog.New(slog.NewTextHandler(os.Stderr, nil)))
	if err != nil {
		t.Fatal(err)
	}
	m.SetDesired(true)
	t.Fatal(m.Run(context.Background())) // runs until killed
}

// TestNetnsKill9AddressExpires: an agent killed with SIGKILL cannot
// remove the VIP; with vip.lifetime the kernel does.
func TestNetnsKill9AddressExpires(t *testing.T) {
	l := newLab(t)
	const vip = "198.51.100.100"
	const lifetime = 2 * time.Second
	cmd := exec.Command("ip", "netns", "exec", l.holder, os.Args[0], "-test.run=^TestNetnsHelperProcess$", "-test.v")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s %s/24 %s", helperEnv, l.holderIf, vip, lifetime))
	var out logBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("helper output:\n%s", &out)
		}
	})
	testutil.Eventually(t, wait, "helper holds the VIP", func() bool {
		return strings.Contains(addrOn(t, l.holder, l.holderIf), vip+"/24")
	})
	if line := lineWith(addrOn(t, l.holder, l.holderIf), vip+"/24"); !strings.Contains(line, "valid_lft") || strings.Contains(line, "valid_lft forever") {
		t.Fatalf("VIP added without a lifetime: %s", line)
	}

	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-exited
	killed := time.Now()
	if !strings.Contains(addrOn(t, l.holder, l.holderIf), vip+"/24") {
		t.Fatal("VIP gone at once: the test cannot tell the lifetime from the agent")
	}
	testutil.Eventually(t, lifetime+5*time.Second, "kernel expires the VIP after kill -9", func() bool {
		return !strings.Contains(addrOn(t, l.holder, l.holderIf), vip)
	})
	gone := time.Since(killed)
	t.Logf("VIP expired %v after kill -9 (vip.lifetime %v)", gone.Round(10*time.Millisecond), lifetime)
	if gone > lifetime+2*time.Second {
		t.Errorf("VIP expired %v after kill -9, want within vip.lifetime+2s = %v", gone, lifetime+2*time.Second)
	}
}

func TestNetnsInterfaceGoes(t *testing.T) {
	l := newLab(t)
	r := startIn(t, l.holder, netnsConfig(l.holderIf, "198.51.100.100/24"))
	r.SetDesired(true)
	testutil.Eventually(t, wait, "Holding()", r.Holding)
	ip(t, "-n", l.holder, "link", "del", l.holderIf)
	testutil.Eventually(t, wait, "fault reported", func() bool {
		st := r.Status()
		return !st.Holding && strings.Contains(st.LastError, "no such network interface") && strings.Contains(st.LastError, l.holderIf)
	})
	r.SetDesired(false)
	testutil.Eventually(t, wait, "fault cleared once nothing is wanted", func() bool { return r.Status().LastError == "" })
	if err := r.stop(t); err != nil {
		t.Fatalf("Run = %v", err)
	}
}

// TestNetnsProbeDecision: the takeover decision on a real link. While the
// peer answers ARP for the VIP, Want with a WaitConflictUntil does not add
// the address; once the peer's copy is gone it is added within a few
// probe rounds. With nobody answering it is added right after the probe
// (two probes within vip.arp_probe).
func TestNetnsProbeDecision(t *testing.T) {
	t.Run("ipv4", func(t *testing.T) { probeDecision(t, "198.51.100.100", "/24") })
	// IPv6: neighbour solicitations, answered by a host with the address.
	t.Run("ipv6", func(t *testing.T) { probeDecision(t, "2001:db8::100", "/64", "nodad") })
}

func probeDecision(t *testing.T, vip, plen string, addFlags ...string) {
	l := newLab(t)
	cfg := netnsConfig(l.holderIf, vip+plen)
	cfg.ARPProbe = 100 * time.Millisecond

	// Answered: the peer holds the VIP (a paused or agent-less old holder).
	ip(t, append([]string{"-n", l.peer, "addr", "add", vip + plen, "dev", l.peerIf}, addFlags...)...)
	r := startIn(t, l.holder, cfg)
	r.Want(Desire{Hold: true, Probe: true, WaitConflictUntil: time.Now().Add(time.Minute)})
	testutil.Eventually(t, wait, "waiting for the answering peer", func() bool { return r.Status().WaitingForConflict })
	time.Sleep(time.Second)
	if strings.Contains(addrOn(t, l.holder, l.holderIf), vip+plen) {
		t.Fatal("address taken while the peer still answers for it")
	}
	if got := r.Status().Conflict; got != l.peerMAC.String() {
		t.Errorf("Status().Conflict = %q, want the peer's MAC %s", got, l.peerMAC)
	}
	ip(t, "-n", l.peer, "addr", "del", vip+plen, "dev", l.peerIf)
	gone := time.Now()
	testutil.EventuallyEvery(t, wait, 5*time.Millisecond, "taken once the peer is quiet", r.Holding)
	t.Logf("answered probe: taken %v after the peer's copy went", time.Since(gone).Round(time.Millisecond))
	if d := time.Since(gone); d > 2*time.Second {
		t.Errorf("taken %v after the peer's copy went, want within a few probe rounds", d)
	}
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}

	// Not answered: taken right after the probe.
	r = startIn(t, l.holder, cfg)
	asked := time.Now()
	r.Want(Desire{Hold: true, Probe: true, WaitConflictUntil: time.Now().Add(time.Minute)})
	testutil.EventuallyEvery(t, wait, 5*time.Millisecond, "taken at once", r.Holding)
	took := time.Since(asked)
	t.Logf("unanswered probe: taken %v after Want", took.Round(time.Millisecond))
	if took < cfg.ARPProbe {
		t.Errorf("taken after %v, before the %v probe could end", took, cfg.ARPProbe)
	}
	if took > 2*time.Second {
		t.Errorf("taken after %v with nobody answering, want about the probe time", took)
	}
}
