package node

import (
	"encoding/json"
	"log/slog"
	"net"
	"os"
	"reflect"
	"syscall"
	"testing"
	"time"

	"github.com/redhaven/redhaven/cluster"
	"github.com/redhaven/redhaven/e2e/testutil"
	"github.com/redhaven/redhaven/proxy"
	"github.com/redhaven/redhaven/vip"
)

// Each service of the new process takes the part of the service of the
// same name; with one service on each side they match whatever the
// names (as before several services); the rest is closed.
func TestInheritedMatch(t *testing.T) {
	part := func(names ...string) *Inherited {
		in := &Inherited{}
		for _, n := range names {
			in.Services = append(in.Services, InheritedService{Name: n})
		}
		return in
	}
	for _, tc := range []struct {
		name    string
		in      *Inherited
		names   []string
		want    []string // the part each name gets, "-" for none
		removed []string
	}{
		{"plain start", nil, []string{"a", "b"}, []string{"-", "-"}, nil},
		{"same services", part("a", "b"), []string{"a", "b"}, []string{"a", "b"}, nil},
		{"order changed", part("a", "b"), []string{"b", "a"}, []string{"b", "a"}, nil},
		{"one renamed to one", part("mymaster"), []string{"cache"}, []string{"mymaster"}, nil},
		{"legacy nameless to one", part(""), []string{"mymaster"}, []string{""}, nil},
		{"one to two", part("mymaster"), []string{"mymaster", "cache"}, []string{"mymaster", "-"}, nil},
		{"two to one", part("mymaster", "cache"), []string{"mymaster"}, []string{"mymaster"}, []string{"cache"}},
		{"removed and added", part("a", "b"), []string{"a", "c"}, []string{"a", "-"}, []string{"b"}},
		{"legacy nameless to two", part(""), []string{"a", "b"}, []string{"-", "-"}, []string{""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mine, removed := tc.in.match(tc.names)
			var got []string
			for _, m := range mine {
				if m == nil {
					got = append(got, "-")
				} else {
					got = append(got, m.Name)
				}
			}
			var gotRemoved []string
			for _, r := range removed {
				gotRemoved = append(gotRemoved, r.Name)
			}
			if !reflect.DeepEqual(got, tc.want) || !reflect.DeepEqual(gotRemoved, tc.removed) {
				t.Fatalf("match(%v) = %v, removed %v; want %v, removed %v", tc.names, got, gotRemoved, tc.want, tc.removed)
			}
		})
	}
}

func seqpacketPair(t *testing.T) (a, b *net.UnixConn) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_SEQPACKET|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) *net.UnixConn {
		f := os.NewFile(uintptr(fd), "handover")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c.(*net.UnixConn)
	}
	return conn(fds[0]), conn(fds[1])
}

// listenerHandoff is a listening socket on loopback as a hand-over
// carries it.
func listenerHandoff(t *testing.T) proxy.ListenerHandoff {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	return proxy.ListenerHandoff{Name: "rw", Listen: ln.Addr().String(), File: f}
}

// The hand-over message carries every service's name, route and sockets,
// in order; a message of a release before several services reads as one
// nameless service.
func TestInheritedWire(t *testing.T) {
	until := time.Now().Add(time.Minute).Round(0)
	in := &Inherited{VIPUntil: until, Services: []InheritedService{
		{Name: "mymaster", Route: proxy.Route{Master: "127.0.0.1:6379", Epoch: 4}, RouteUntil: until,
			Proxy: &proxy.Handoff{Listeners: []proxy.ListenerHandoff{listenerHandoff(t)}}},
		{Name: "cache", VIPUntil: until.Add(time.Second), // its own VIP's lease
			Proxy: &proxy.Handoff{Listeners: []proxy.ListenerHandoff{listenerHandoff(t)}}},
	}}
	defer in.Close()
	a, b := seqpacketPair(t)
	sent := make(chan error, 1)
	go func() { sent <- SendInherited(a, in) }()
	got, err := ReceiveInherited(b)
	if err != nil {
		t.Fatal(err)
	}
	defer got.Close()
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	if len(got.Services) != 2 || !got.VIPUntil.Equal(until) {
		t.Fatalf("received %d services, vip until %v", len(got.Services), got.VIPUntil)
	}
	for i, is := range got.Services {
		want := in.Services[i]
		if is.Name != want.Name || !reflect.DeepEqual(is.Route, want.Route) || !is.RouteUntil.Equal(want.RouteUntil) {
			t.Errorf("service %d: got %q %+v until %v, want %q %+v until %v", i, is.Name, is.Route, is.RouteUntil, want.Name, want.Route, want.RouteUntil)
		}
		if !is.VIPUntil.Equal(want.VIPUntil) {
			t.Errorf("service %d: its VIP's lease until %v, want %v", i, is.VIPUntil, want.VIPUntil)
		}
		if len(is.Proxy.Listeners) != 1 || is.Proxy.Listeners[0].Listen != want.Proxy.Listeners[0].Listen {
			t.Fatalf("service %d: listeners %+v", i, is.Proxy.Listeners)
		}
		ln, err := net.FileListener(is.Proxy.Listeners[0].File)
		if err != nil {
			t.Fatal(err)
		}
		if ln.Addr().String() != want.Proxy.Listeners[0].Listen {
			t.Errorf("service %d: the listener received listens on %s, want %s", i, ln.Addr(), want.Proxy.Listeners[0].Listen)
		}
		ln.Close()
	}

	// A release before several services: the route at the top, then one
	// proxy hand-off.
	legacy := listenerHandoff(t)
	old := &proxy.Handoff{Listeners: []proxy.ListenerHandoff{legacy}}
	defer old.Close()
	msg, _ := json.Marshal(map[string]any{"route": proxy.Route{Master: "127.0.0.1:7000", Epoch: 9}, "route_until": until})
	go func() {
		if _, err := a.Write(msg); err != nil {
			sent <- err
			return
		}
		sent <- proxy.SendHandoff(a, old)
	}()
	got, err = ReceiveInherited(b)
	if err != nil {
		t.Fatal(err)
	}
	defer got.Close()
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	if len(got.Services) != 1 || got.Services[0].Name != "" || got.Services[0].Route.Epoch != 9 ||
		len(got.Services[0].Proxy.Listeners) != 1 || got.Services[0].Proxy.Listeners[0].Listen != legacy.Listen {
		t.Fatalf("legacy message received as %+v", got.Services)
	}
}

// TestInheritedServiceVIPAdopted: the new process adopts the shared VIP's
// lease from Inherited.VIPUntil and a service's own VIP's lease from the
// part of the same name only; a VIP with no lease handed over is not
// adopted (its manager starts with nothing to hold).
func TestInheritedServiceVIPAdopted(t *testing.T) {
	slot := func(key, addr string) *vipSlot {
		vc := vip.DefaultConfig()
		vc.Mode, vc.Address, vc.Interface = vip.ModeNetlink, addr, "lo"
		mgr, err := vip.New(vc, nil)
		if err != nil {
			testutil.Require(t, "root", "vip manager on lo: "+err.Error())
		}
		return &vipSlot{key: key, cfg: vc, mgr: mgr, logger: slog.New(slog.DiscardHandler)}
	}
	now := time.Now()
	n := &Node{logger: slog.New(slog.DiscardHandler), vips: []*vipSlot{
		slot(cluster.SharedVIP, "192.0.2.100/32"), slot("cache", "192.0.2.101/32"), slot("other", "192.0.2.102/32"), slot("renamed", "192.0.2.103/32"),
	}}
	n.adoptVIP(&Inherited{VIPUntil: now.Add(time.Minute), Services: []InheritedService{
		{Name: "mymaster"},
		{Name: "cache", VIPUntil: now.Add(2 * time.Minute)},
		{Name: "other"}, // shared the VIP in the old process
		{Name: "old-name", VIPUntil: now.Add(3 * time.Minute)}, // its lease is keyed by the old name
	}})
	for i, want := range []time.Duration{time.Minute, 2 * time.Minute, 0, 0} {
		v := n.vips[i]
		got := v.lease.inherited
		switch {
		case want == 0 && !got.IsZero():
			t.Errorf("vip %q adopted a lease until %v, want none", v.key, got)
		case want != 0 && (got.Before(now.Add(want-time.Second)) || got.After(now.Add(want+time.Second))):
			t.Errorf("vip %q adopted a lease until %v, want about %v", v.key, got, now.Add(want))
		}
	}
}
