package node

import (
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/redhaven/redhaven/proxy"
)

func TestChangedKeys(t *testing.T) {
	a := DefaultConfig()
	b := DefaultConfig()
	if got := ChangedKeys(a, b); len(got) != 0 {
		t.Fatalf("same config: %v", got)
	}
	b.Log.Level = "debug"
	b.Proxy.HoldTimeout = a.Proxy.HoldTimeout + time.Second
	b.Redis.Password = "secret"
	b.Redis.Sentinels = []string{"10.0.0.1:26379"}
	got := ChangedKeys(a, b)
	want := []string{"log.level", "proxy.hold_timeout", "redis.password", "redis.sentinels"}
	if !slices.Equal(got, want) {
		t.Fatalf("ChangedKeys = %v, want %v", got, want)
	}
	live, restart := SplitReload(got)
	if !slices.Equal(live, want[:2]) || !slices.Equal(restart, want[2:]) {
		t.Fatalf("SplitReload: live %v restart %v", live, restart)
	}
}

// The handed-over route is followed until Raft contact, a contradiction
// or its end, whichever comes first, and never again after.
func TestSeededRoute(t *testing.T) {
	n := &Node{logger: slog.New(slog.DiscardHandler)}
	in := &Inherited{Route: proxy.Route{Master: "10.0.0.1:6379", Epoch: 3}, RouteUntil: time.Now().Add(time.Hour)}
	n.seed = in.seed()
	empty := proxy.Route{}
	if r := n.seeded(empty, false, false); r.Master != "10.0.0.1:6379" {
		t.Fatalf("before contact: %+v", r)
	}
	if r := n.seeded(empty, false, true); r.Master != "" {
		t.Fatalf("contradicted: %+v", r)
	}
	if r := n.seeded(empty, false, false); r.Master != "" {
		t.Fatalf("after a contradiction the seed is gone: %+v", r)
	}
	n.seed = in.seed()
	if r := n.seeded(empty, true, false); r.Master != "" {
		t.Fatalf("in contact: the committed route rules: %+v", r)
	}
	expired := &Inherited{Route: in.Route, RouteUntil: time.Now().Add(-time.Millisecond)}
	if expired.seed() != nil {
		t.Fatal("an expired route is a seed")
	}
}
