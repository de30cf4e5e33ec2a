package vip

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/redhaven/redhaven/e2e/testutil"
)

// TestWantUntilRemovesByItself: a desire with an end (a lease) removes the
// address at that end without any further call, even with a long
// check_interval.
func TestWantUntilRemovesByItself(t *testing.T) {
	cfg := testConfig()
	cfg.CheckInterval = time.Minute
	cfg.Lifetime = 0
	f := &fakeSys{}
	r := startFake(t, cfg, f)
	until := time.Now().Add(300 * time.Millisecond)
	r.Want(Desire{Hold: true, Until: until})
	testutil.Eventually(t, wait, "holding", r.Holding)
	if p := get(f, func(f *fakeSys) int { return f.probes }); p != 0 {
		t.Errorf("probed %d times without Desire.Probe", p)
	}
	testutil.EventuallyEvery(t, wait, 5*time.Millisecond, "removed at Until", func() bool { return !get(f, func(f *fakeSys) bool { return f.addr }) })
	if late := time.Since(until); late < 0 || late > time.Second {
		t.Errorf("removed %v after Until, want soon after", late)
	}
	// An expired desire never adds the address again.
	time.Sleep(100 * time.Millisecond)
	r.Want(Desire{Hold: true, Until: until})
	time.Sleep(100 * time.Millisecond)
	if get(f, func(f *fakeSys) bool { return f.addr }) {
		t.Error("an expired desire added the address")
	}
}

// TestWantWaitsForAnsweringHost: while another host answers the probe and
// WaitConflictUntil has not passed, the address is not added; it is added
// as soon as the probe goes unanswered, or once the wait has passed.
func TestWantWaitsForAnsweringHost(t *testing.T) {
	other := net.HardwareAddr{0x02, 0, 0, 0, 0, 0x77}
	t.Run("taken when the other goes quiet", func(t *testing.T) {
		f := &fakeSys{probeMAC: other}
		r := startFake(t, testConfig(), f)
		r.Want(Desire{Hold: true, Probe: true, WaitConflictUntil: time.Now().Add(time.Hour)})
		testutil.Eventually(t, wait, "waiting for the conflict", func() bool { return r.Status().WaitingForConflict })
		time.Sleep(3 * conflictRetry)
		if get(f, func(f *fakeSys) bool { return f.addr }) {
			t.Fatal("address added while another host answers")
		}
		if p := get(f, func(f *fakeSys) int { return f.probes }); p < 2 {
			t.Errorf("probed %d times while waiting, want it asked again", p)
		}
		f.mu.Lock()
		f.probeMAC = nil // the other host's copy expired
		f.mu.Unlock()
		quiet := time.Now()
		testutil.Eventually(t, wait, "holding once nobody answers", r.Holding)
		if d := time.Since(quiet); d > 2*time.Second {
			t.Errorf("took %v after the other went quiet", d)
		}
		if r.Status().WaitingForConflict {
			t.Error("still WaitingForConflict while holding")
		}
	})
	t.Run("taken after the wait", func(t *testing.T) {
		f := &fakeSys{probeMAC: other}
		r := startFake(t, testConfig(), f)
		waitUntil := time.Now().Add(500 * time.Millisecond)
		r.Want(Desire{Hold: true, Probe: true, WaitConflictUntil: waitUntil})
		testutil.Eventually(t, wait, "holding after the wait", r.Holding)
		if time.Now().Before(waitUntil) {
			t.Error("taken before WaitConflictUntil although the other host answers")
		}
	})
	t.Run("no probe after a clean release", func(t *testing.T) {
		f := &fakeSys{probeMAC: other}
		r := startFake(t, testConfig(), f)
		r.Want(Desire{Hold: true, WaitConflictUntil: time.Now().Add(time.Hour)})
		testutil.Eventually(t, wait, "holding at once", r.Holding)
		if p := get(f, func(f *fakeSys) int { return f.probes }); p != 0 {
			t.Errorf("probed %d times with Probe false", p)
		}
	})
}

// TestKeepOnStop: after KeepOnStop the address stays on the link when Run
// ends (a hand-over), and a new manager that wants it adopts it without
// removing it first.
func TestKeepOnStop(t *testing.T) {
	f := &fakeSys{}
	r := startFake(t, testConfig(), f)
	r.Want(Desire{Hold: true})
	testutil.Eventually(t, wait, "holding", r.Holding)
	r.KeepOnStop()
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	if !get(f, func(f *fakeSys) bool { return f.addr }) {
		t.Fatal("address removed at shutdown despite KeepOnStop")
	}
	next, err := newManager(testConfig(), nil, func(Config, netip.Prefix) (func() (system, error), error) {
		return func() (system, error) { return f, nil }, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	next.Want(Desire{Hold: true, Until: time.Now().Add(time.Minute)}) // before Run: the first round adopts it
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- next.Run(ctx) }()
	testutil.Eventually(t, wait, "adopted", next.Holding)
	cancel()
	<-done
	if n := get(f, func(f *fakeSys) int { return f.removes }); n != 1 {
		t.Errorf("%d removals, want only the final shutdown's", n)
	}
}
