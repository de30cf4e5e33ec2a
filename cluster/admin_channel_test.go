package cluster

import (
	"context"
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// keyedAgent builds (does not run) an agent with the cluster key on a
// loopback Raft port.
func keyedAgent(t *testing.T, name, key string) *Agent {
	t.Helper()
	cfg := DefaultConfig()
	cfg.NodeName, cfg.DataDir = name, t.TempDir()
	cfg.Bind, cfg.RaftBind = "127.0.0.1:0", "127.0.0.1:0"
	cfg.BootstrapExpect, cfg.Encrypt = 1, key
	a, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.stream.Close() })
	return a
}

// TestAskTimeout: a node that takes a request and does not answer within
// the caller's deadline is ErrLeaderTimeout (504: outcome unknown); one
// that closes without an answer, ErrNoLeader (503).
func TestAskTimeout(t *testing.T) {
	key, _ := GenerateKey()
	slow, caller := keyedAgent(t, "n1", key), keyedAgent(t, "n2", key)
	got := make(chan struct{}, 4)
	var hangUp atomic.Bool
	slow.stream.admin = func(ctx context.Context, c net.Conn) {
		if hangUp.Load() {
			_ = c.Close()
			return
		}
		got <- struct{}{}
		<-ctx.Done() // never answers; the layer's Close cancels
	}
	go func() { _, _ = slow.stream.Accept() }() // starts the accept loop
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := caller.ask(ctx, "n1", slow.RaftAddr(), adminRequest{Leader: &LeaderOp{Kind: OpFailover}})
	if !errors.Is(err, ErrLeaderTimeout) {
		t.Fatalf("silent leader: %v, want ErrLeaderTimeout", err)
	}
	select {
	case <-got:
	default:
		t.Fatal("the request never reached the slow node (a dial timeout, not the case under test)")
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("answered after %v, want about the 300ms deadline", took)
	}
	hangUp.Store(true)
	ctx2, cancel2 := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel2()
	if _, err := caller.ask(ctx2, "n1", slow.RaftAddr(), adminRequest{Leader: &LeaderOp{Kind: OpFailover}}); !errors.Is(err, ErrNoLeader) {
		t.Fatalf("leader that hangs up: %v, want ErrNoLeader", err)
	}
}
