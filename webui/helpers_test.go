package webui_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/redhaven/redhaven/webui"
)

// testSource is a mutable Source.
type testSource struct {
	mu   sync.Mutex
	snap webui.Snapshot
}

func (s *testSource) Snapshot() webui.Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	snap := s.snap
	snap.Backends = append([]webui.Backend(nil), s.snap.Backends...)
	snap.Events = append([]webui.Event(nil), s.snap.Events...)
	snap.Services = append([]webui.Service(nil), s.snap.Services...)
	for i := range snap.Services {
		snap.Services[i].Backends = append([]webui.Backend(nil), snap.Services[i].Backends...)
	}
	return snap
}

func (s *testSource) update(f func(*webui.Snapshot)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(&s.snap)
}

// setMaster makes addr the committed master (and the others replicas).
func (s *testSource) setMaster(addr string, epoch int64) {
	s.update(func(snap *webui.Snapshot) {
		snap.Route.Master, snap.Route.Epoch, snap.Route.Reason = addr, epoch, "switch-master"
		for i := range snap.Backends {
			b := &snap.Backends[i]
			b.IsMaster = b.Addr == addr
			if b.IsMaster {
				b.Role = "master"
			} else {
				b.Role = "replica"
			}
		}
	})
}

// testAdmin records the calls it gets.
type testAdmin struct {
	mu    sync.Mutex
	calls []string
	err   error
	src   *testSource // if set, SetBackendState updates it
}

func (a *testAdmin) record(c string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls = append(a.calls, c)
	return a.err
}

func (a *testAdmin) Calls() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.calls...)
}

// testLeader is the node name the test admin reports as the one that acted.
const testLeader = "n1"

// SetBackendState records "backend ADDR STATE", or with a service name
// "backend SERVICE/ADDR STATE".
func (a *testAdmin) SetBackendState(ctx context.Context, service, addr, state string) (webui.Acted, error) {
	if err := a.record("backend " + svcPrefix(service) + addr + " " + state); err != nil {
		return webui.Acted{}, err
	}
	if a.src != nil {
		set := func(bs []webui.Backend) {
			for i := range bs {
				if bs[i].Addr == addr {
					bs[i].Admin = state
					if state == webui.AdminMaintenance {
						bs[i].State = webui.StateMaint
					}
				}
			}
		}
		a.src.update(func(snap *webui.Snapshot) {
			if len(snap.Services) == 0 {
				set(snap.Backends)
			}
			for i := range snap.Services {
				if snap.Services[i].Name == service {
					set(snap.Services[i].Backends)
				}
			}
		})
	}
	return webui.Acted{Node: testLeader}, nil
}

// RequestFailover records "failover", or "failover SERVICE".
func (a *testAdmin) RequestFailover(ctx context.Context, service string) (webui.Acted, error) {
	c := "failover"
	if service != "" {
		c += " " + service
	}
	return webui.Acted{Node: testLeader}, a.record(c)
}

func svcPrefix(service string) string {
	if service == "" {
		return ""
	}
	return service + "/"
}

func (a *testAdmin) TransferLeadership(ctx context.Context, node string) (webui.Acted, error) {
	return webui.Acted{Node: testLeader}, a.record("transfer " + node)
}

var t0 = time.Date(2026, 11, 22, 4, 30, 0, 0, time.UTC)

const (
	addrA = "127.0.0.1:16379"
	addrB = "127.0.0.1:16380"
	addrC = "127.0.0.1:16381"
)

// sampleSnapshot is a three-node cluster just after a failover from C to A.
func sampleSnapshot() webui.Snapshot {
	now := t0
	return webui.Snapshot{
		Node: "node1", Version: "0.3.0", Time: now, Started: now.Add(-26*time.Hour - 12*time.Minute),
		Ready: true, Leader: true,
		RefusedCommands: map[string]uint64{"config set masterauth": 2, "replicaof": 1},
		Route:           webui.Route{Master: addrA, Epoch: 7, Reason: "promoted-slave", Since: now.Add(-3*time.Minute - 12*time.Second)},
		Frontends: []webui.Frontend{
			{Name: "rw", Addr: ":6380", CurrentSessions: 412, MaxSessions: 1310, Limit: 10000, TotalSessions: 182231,
				CommandsTotal: 98412377, CommandsPerSec: 18234.5, BytesIn: 9_812_345_678, BytesOut: 23_456_789_012, Errors: 17, Refused: 0, IdleSessions: 301, MovedToOwn: 12, AuthFailures: 5},
			{Name: "ro", Addr: ":6381", CurrentSessions: 96, MaxSessions: 240, Limit: 10000, TotalSessions: 5120,
				CommandsTotal: 4410021, CommandsPerSec: 812.25, BytesIn: 412_345_678, BytesOut: 3_456_789_012, Errors: 0, Refused: 3},
		},
		Clients: webui.ClientLimits{BufferBytes: 81920, BufferLimit: 4 << 30, Closed: map[string]uint64{"http": 2, "auth_timeout": 9}},
		Backends: []webui.Backend{
			{Addr: addrA, Role: "master", State: webui.StateUp, IsMaster: true, LastCheck: now.Add(-400 * time.Millisecond),
				CheckDuration: 412 * time.Microsecond, LastChange: now.Add(-3*time.Minute - 12*time.Second), Downtime: 0,
				Offset: 1_843_211_774, LinkUp: true, Sessions: 412, Commands: 98_000_123, Errors: 2, Admin: webui.AdminReady},
			{Addr: addrB, Role: "replica", State: webui.StateUp, LastCheck: now.Add(-300 * time.Millisecond),
				CheckDuration: 380 * time.Microsecond, LastChange: now.Add(-26 * time.Hour), Offset: 1_843_210_902, LagBytes: 872,
				LinkUp: true, Sessions: 96, Commands: 4_410_021, Admin: webui.AdminReady},
			{Addr: addrC, Role: "", State: webui.StateDown, LastCheck: now.Add(-700 * time.Millisecond),
				CheckDuration: 1000 * time.Millisecond, LastError: "dial tcp 127.0.0.1:16381: connect: connection refused",
				LastChange: now.Add(-3*time.Minute - 14*time.Second), Downtime: 3*time.Minute + 14*time.Second, Offset: 1_843_100_000,
				Admin: webui.AdminReady},
		},
		Sentinels: []webui.Sentinel{
			{Addr: "127.0.0.1:26379", Reachable: true, Master: addrA, Epoch: 7, LastEvent: "+switch-master", LastEventTime: now.Add(-3*time.Minute - 11*time.Second)},
			{Addr: "127.0.0.1:26380", Reachable: true, Master: addrA, Epoch: 7, LastEvent: "+switch-master", LastEventTime: now.Add(-3*time.Minute - 11*time.Second)},
			{Addr: "127.0.0.1:26381", Reachable: false, Master: addrC, Epoch: 6, LastEvent: "+sdown", LastEventTime: now.Add(-3*time.Minute - 13*time.Second), LastError: "i/o timeout"},
		},
		Members: []webui.Member{
			{Name: "node1", Addr: "10.0.0.11:7946", GossipState: "alive", RaftRole: "leader", RaftAddr: "10.0.0.11:7947", Version: "0.3.0", HTTPAddr: "10.0.0.11:8404", IsLeader: true},
			{Name: "node2", Addr: "10.0.0.12:7946", GossipState: "alive", RaftRole: "follower", RaftAddr: "10.0.0.12:7947", LastContact: 42 * time.Millisecond, Version: "0.3.0", HTTPAddr: "10.0.0.12:8404"},
			{Name: "node3", Addr: "10.0.0.13:7946", GossipState: "suspect", RaftRole: "follower", RaftAddr: "10.0.0.13:7947", LastContact: 3200 * time.Millisecond, Version: "0.2.9", HTTPAddr: "10.0.0.13:8404"},
		},
		VIP: webui.VIP{Mode: "netlink", Address: "10.0.0.100/24", Interface: "eth0", Holder: "node1", HeldHere: true,
			LeaseRemaining: 0.75, LeaseChanges: map[string]uint64{"grant": 1, "takeover": 2, "release": 0}},
		Events: []webui.Event{
			{Time: now.Add(-26 * time.Hour), Kind: webui.EventJoin, Node: "node3", Message: "node3 joined the cluster"},
			{Time: now.Add(-3*time.Minute - 14*time.Second), Kind: "down", Node: "node1", Message: "master 127.0.0.1:16381 unreachable"},
			{Time: now.Add(-3*time.Minute - 12*time.Second), Kind: webui.EventFailover, Node: "node1", Message: "master 127.0.0.1:16381 -> 127.0.0.1:16380 (epoch 7, promoted-slave)", Duration: 1840 * time.Millisecond},
			{Time: now.Add(-2 * time.Hour), Kind: webui.EventFailover, Node: "node2", Message: "planned failover 127.0.0.1:16380 -> 127.0.0.1:16381 (epoch 6)", Duration: 420 * time.Millisecond},
			{Time: now.Add(-25 * time.Hour), Kind: webui.EventVIP, Node: "node1", Message: "vip 10.0.0.100/24 added on eth0"},
		},
	}
}

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

type user struct{ name, pw, role string }

var (
	adminUser  = user{"alice", "alice-secret", webui.RoleAdmin}
	readerUser = user{"bob", "bob-secret", webui.RoleRead}
)

// hashes are computed once, at bcrypt's lowest cost: bcrypt is slow by
// design, and more so under -race (HashPassword has its own test).
var hashes = sync.OnceValue(func() map[string]string {
	m := map[string]string{}
	for _, u := range []user{adminUser, readerUser} {
		h, err := bcrypt.GenerateFromPassword([]byte(u.pw), bcrypt.MinCost)
		if err != nil {
			panic(err)
		}
		m[u.name] = string(h)
	}
	return m
})

// testHost is the Host of httptest.NewRequest, allowed in the test configs.
const testHost = "example.com"

func authConfig() webui.Config {
	cfg := openConfig()
	for _, u := range []user{adminUser, readerUser} {
		cfg.Auth = append(cfg.Auth, webui.User{Name: u.name, PasswordHash: hashes()[u.name], Role: u.role})
	}
	return cfg
}

func openConfig() webui.Config {
	cfg := webui.DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.AdminSocket = "" // tests that want one set a path of their own
	cfg.AllowedHosts = []string{testHost}
	return cfg
}

func newServer(t *testing.T, cfg webui.Config, src webui.Source, admin webui.Admin) *webui.Server {
	t.Helper()
	var a webui.Admin
	if admin != nil {
		a = admin
	}
	s, err := webui.New(cfg, src, a, quietLogger())
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// do runs one request against h and returns the recorded response.
func do(h http.Handler, method, target string, body io.Reader, hdr map[string]string, u *user) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, body)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	if u != nil {
		req.SetBasicAuth(u.name, u.pw)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func mustContain(t *testing.T, what, body string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(body, w) {
			t.Errorf("%s: missing %q", what, w)
		}
	}
}
