package proxy

import (
	"testing"
	"time"

	"github.com/redhaven/redhaven/e2e/redistest"
)

// A reload changes hold_timeout and max_clients of a running proxy.
func TestSetLive(t *testing.T) {
	cfg := testConfig()
	cfg.HoldTimeout = 10 * time.Second
	srv := startProxy(t, cfg, newRoutes("")) // no master: commands are held
	c := dialRaw(t, srv.Addr().String())
	l := cfg.Live()
	l.HoldTimeout, l.MaxClients = 200*time.Millisecond, 1
	srv.SetLive(l)
	start := time.Now()
	c.send("GET", "k")
	c.expect(replyMasterDown(false, 200*time.Millisecond))
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("held %s with hold_timeout 200ms", d)
	}
	second := dialRaw(t, srv.Addr().String())
	second.expect(ReplyMaxClients)
}

// A reload turns on client_idle_timeout for clients already connected:
// an idle one is closed, counted from its last input.
func TestSetLiveIdleTimeout(t *testing.T) {
	rs := redistest.StartServer(t, redistest.ServerOptions{})
	cfg := testConfig() // client_idle_timeout 0: never
	srv := startProxy(t, cfg, newRoutes(rs.Addr))
	idle := dialRaw(t, srv.Addr().String())
	idle.do("+PONG\r\n", "PING")
	time.Sleep(300 * time.Millisecond)
	if n := srv.Stats().ClientsClosed["idle_timeout"]; n != 0 {
		t.Fatalf("closed for idle_timeout before the reload: %d", n)
	}
	l := cfg.Live()
	l.ClientIdleTimeout = 500 * time.Millisecond
	srv.SetLive(l)
	if got := idle.closedAfter(); got != "" {
		t.Errorf("idle client got %q before the close, want nothing", got)
	}
	if n := srv.Stats().ClientsClosed["idle_timeout"]; n != 1 {
		t.Errorf("clients closed for idle_timeout = %d, want 1", n)
	}
}

// A reload changes prefer_replica: read-only sessions pick the new
// preferred replica, or spread again when it is cleared.
func TestSetLivePreferReplica(t *testing.T) {
	cfg := testConfig()
	cfg.ReadonlyListen = "127.0.0.1:0"
	srv := startProxy(t, cfg, newRoutes(""))
	srv.route.Store(&Route{Master: "10.0.0.1:6379", Replicas: []string{"10.0.0.2:6379", "10.0.0.3:6379"}})
	ro := &listener{readonly: true}
	targets := func() map[string]int {
		got := map[string]int{}
		for id := range uint64(4) {
			got[srv.target(&session{srv: srv, l: ro, id: id})]++
		}
		return got
	}
	if got := targets(); got["10.0.0.2:6379"] != 2 || got["10.0.0.3:6379"] != 2 {
		t.Fatalf("without prefer_replica: %v, want both replicas", got)
	}
	l := cfg.Live()
	l.PreferReplica = "10.0.0.3:6379"
	srv.SetLive(l)
	if got := targets(); got["10.0.0.3:6379"] != 4 {
		t.Errorf("prefer_replica 10.0.0.3:6379 after the reload: %v", got)
	}
	l.PreferReplica = ""
	srv.SetLive(l)
	if got := targets(); got["10.0.0.2:6379"] != 2 {
		t.Errorf("prefer_replica cleared: %v, want both replicas again", got)
	}
}
