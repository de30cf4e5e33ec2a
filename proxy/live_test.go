package proxy

import (
	"testing"
	"time"
)

// A reload changes hold_timeout and max_clients of a running proxy.
func TestSetLive(t *testing.T) {
	cfg := testConfig()
	cfg.HoldTimeout = 10 * time.Second
	srv := startProxy(t, cfg, newRoutes("")) // no master: commands are held
	c := dialRaw(t, srv.Addr().String())
	srv.SetLive(200*time.Millisecond, 1)
	start := time.Now()
	c.send("GET", "k")
	c.expect(replyMasterDown(false, 200*time.Millisecond))
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("held %s with hold_timeout 200ms", d)
	}
	second := dialRaw(t, srv.Addr().String())
	second.expect(ReplyMaxClients)
}
