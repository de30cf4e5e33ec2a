package cluster_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redhaven/redhaven/cluster"
	"github.com/redhaven/redhaven/cluster/clustertest"
)

// startThree starts a keyed 3-node cluster and returns it with the
// leader's index and a follower's.
func startThree(t *testing.T) (c *clustertest.Cluster, leader, follower int) {
	t.Helper()
	c = clustertest.New(t, 3, clustertest.Options{})
	c.StartAll()
	l := c.WaitLeader(formTimeout)
	waitVoters(t, c, names(3)...)
	waitAllInContact(t, c)
	return c, l, (l + 1) % 3
}

// TestForwardToLeader: admin actions sent to a follower are carried out by
// the leader over the admin channel (the Raft port's mutual TLS, ALPN
// redhaven-admin/1), and its refusals come back as the same errors.
func TestForwardToLeader(t *testing.T) {
	c, l, f := startThree(t)
	leaderName := c.Nodes[l].Config.NodeName
	fol := c.Nodes[f].Agent
	ctx := ctxT(t)

	start := time.Now()
	acted, err := fol.OnLeader(ctx, cluster.LeaderOp{Kind: cluster.OpBackendState, Addr: "10.0.0.5:6379", State: cluster.AdminDrain})
	if err != nil {
		t.Fatalf("forwarded drain: %v", err)
	}
	t.Logf("forwarded drain answered by %s after %v", acted.Node, time.Since(start).Round(time.Microsecond))
	if acted.Node != leaderName || !acted.Forwarded {
		t.Fatalf("acted = %+v, want forwarded to %s", acted, leaderName)
	}
	clustertest.Eventually(t, formTimeout, "drain committed on every node", func() bool {
		for _, a := range c.Running() {
			if a.State().Service(svc).Admin["10.0.0.5:6379"] != cluster.AdminDrain {
				return false
			}
		}
		return true
	})
	// The leader itself does not forward.
	if acted, err := c.Nodes[l].Agent.OnLeader(ctx, cluster.LeaderOp{Kind: cluster.OpBackendState, Addr: "10.0.0.5:6379", State: cluster.AdminReady}); err != nil || acted.Forwarded || acted.Node != leaderName {
		t.Fatalf("on the leader: %+v %v", acted, err)
	}

	acted, err = fol.OnLeader(ctx, cluster.LeaderOp{Kind: cluster.OpFailover})
	if err != nil || acted.ID == 0 {
		t.Fatalf("forwarded failover: %+v %v", acted, err)
	}
	if p, ok := c.Nodes[l].Agent.State().Service(svc).PendingFailover(); !ok || p.ID != acted.ID || p.Reason != "requested on "+c.Nodes[f].Config.NodeName {
		t.Fatalf("pending failover on the leader = %+v %v, want id %d requested on the follower", p, ok, acted.ID)
	}

	for _, tc := range []struct {
		name string
		op   cluster.LeaderOp
		want error
	}{
		{"second failover", cluster.LeaderOp{Kind: cluster.OpFailover}, cluster.ErrFailoverPending},
		{"bad state", cluster.LeaderOp{Kind: cluster.OpBackendState, Addr: "a:1", State: "sleepy"}, cluster.ErrBadRequest},
		{"unknown op", cluster.LeaderOp{Kind: "reboot"}, cluster.ErrBadRequest},
		{"remove unknown member", cluster.LeaderOp{Kind: cluster.OpRemoveMember, Node: "nobody"}, cluster.ErrUnknownMember},
		{"remove alive member", cluster.LeaderOp{Kind: cluster.OpRemoveMember, Node: c.Nodes[f].Config.NodeName}, cluster.ErrMemberAlive},
		{"transfer to a stranger", cluster.LeaderOp{Kind: cluster.OpTransferLeadership, Node: "nobody"}, cluster.ErrUnknownMember},
		{"failover of an unknown service", cluster.LeaderOp{Kind: cluster.OpFailover, Service: "nope"}, cluster.ErrUnknownService},
		{"admin of an unknown service", cluster.LeaderOp{Kind: cluster.OpBackendState, Service: "nope", Addr: "a:1", State: cluster.AdminDrain}, cluster.ErrUnknownService},
		{"reset of an unknown service", cluster.LeaderOp{Kind: cluster.OpResetRoute, Service: "nope"}, cluster.ErrUnknownService},
	} {
		if _, err := fol.OnLeader(ctx, tc.op); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}

	// Leadership moves through a forwarded transfer; the next request
	// from the same follower finds the new leader.
	target := c.Nodes[(l+2)%3].Config.NodeName
	if _, err := fol.OnLeader(ctx, cluster.LeaderOp{Kind: cluster.OpTransferLeadership, Node: target}); err != nil {
		t.Fatalf("forwarded transfer to %s: %v", target, err)
	}
	nl := c.WaitLeader(electBound)
	if got := c.Nodes[nl].Config.NodeName; got != target {
		t.Fatalf("leader after transfer = %s, want %s", got, target)
	}
	acted, err = fol.OnLeader(ctx, cluster.LeaderOp{Kind: cluster.OpBackendState, Addr: "10.0.0.6:6379", State: cluster.AdminMaintenance})
	if err != nil || acted.Node != target {
		t.Fatalf("after the transfer: %+v %v, want acted by %s", acted, err, target)
	}

	// No quorum: the remaining node answers ErrNoLeader, within a bound.
	c.Stop(nl)
	c.Stop((nl + 1) % 3)
	last := c.Nodes[(nl+2)%3].Agent
	clustertest.Eventually(t, electBound, "the last node has no leader", func() bool { n, _ := last.Leader(); return n == "" })
	start = time.Now()
	qctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := last.OnLeader(qctx, cluster.LeaderOp{Kind: cluster.OpFailover}); !errors.Is(err, cluster.ErrNoLeader) {
		t.Fatalf("without quorum: %v, want ErrNoLeader", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("ErrNoLeader after %v, want an answer within a few seconds", took)
	} else {
		t.Logf("no leader: answered after %v", took.Round(time.Millisecond))
	}
}

// TestResetRoute: a committed route that Sentinel can never pass (a
// forged epoch) is cleared by a route reset sent to a follower, after
// which a route at Sentinel's epoch commits again. A reset that names a
// route that is no longer committed changes nothing.
func TestResetRoute(t *testing.T) {
	c, l, f := startThree(t)
	leader, fol := c.Nodes[l].Agent, c.Nodes[f].Agent
	ctx := ctxT(t)
	forged := cluster.RouteDecision{Master: "203.0.113.9:6379", Epoch: 999999999, Reason: "forged"}
	if err := leader.ProposeRoute(ctx, svc, forged); err != nil {
		t.Fatal(err)
	}
	waitRoute(t, c, forged.Master, forged.Epoch)
	if err := leader.ProposeRoute(ctx, svc, cluster.RouteDecision{Master: "10.0.0.1:6379", Epoch: 7}); !errors.Is(err, cluster.ErrStaleEpoch) {
		t.Fatalf("sentinel's epoch over the forged route: %v, want ErrStaleEpoch", err)
	}
	stale := cluster.RouteDecision{Master: forged.Master, Epoch: 5}
	if _, err := fol.OnLeader(ctx, cluster.LeaderOp{Kind: cluster.OpResetRoute, Expect: &stale}); !errors.Is(err, cluster.ErrRouteChanged) {
		t.Fatalf("reset naming another route: %v, want ErrRouteChanged", err)
	}
	acted, err := fol.OnLeader(ctx, cluster.LeaderOp{Kind: cluster.OpResetRoute, Expect: &forged, Reason: "test"})
	if err != nil || !acted.Forwarded {
		t.Fatalf("reset through the follower: %+v %v", acted, err)
	}
	waitRoute(t, c, "", 0)
	if err := leader.ProposeRoute(ctx, svc, cluster.RouteDecision{Master: "10.0.0.1:6379", Epoch: 7, Reason: "sentinel"}); err != nil {
		t.Fatalf("sentinel's route after the reset: %v", err)
	}
	waitRoute(t, c, "10.0.0.1:6379", 7)
}

// TestKeysFanOut: a key rotation run from one follower reaches every
// member over the admin channel while the leader keeps committing; the
// steps that would cut a node off are refused; no key lands in raft.db.
func TestKeysFanOut(t *testing.T) {
	c, l, f := startThree(t)
	fol := c.Nodes[f].Agent
	keyA := c.Key
	keyB := clustertest.Key(t)
	fpA, fpB := cluster.KeyFingerprint(keyA), cluster.KeyFingerprint(keyB)

	// Raft writes continue through the rotation; the longest commit is
	// recorded.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var worst time.Duration
	var commits, failed int
	wg.Add(1)
	go func() {
		defer wg.Done()
		for epoch := int64(1); ; epoch++ {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			for _, n := range c.Nodes {
				if n.Agent != nil && n.Agent.IsLeader() {
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					start := time.Now()
					err := n.Agent.ProposeRoute(ctx, svc, cluster.RouteDecision{Master: "10.0.0.1:6379", Epoch: epoch})
					cancel()
					mu.Lock()
					if err != nil {
						failed++
					} else {
						commits++
						worst = max(worst, time.Since(start))
					}
					mu.Unlock()
					break
				}
			}
		}
	}()
	ctx := ctxT(t)
	rings := func(step string, results []cluster.KeyResult, err error, check func(r cluster.KeyRing) bool) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		if len(results) != 3 {
			t.Fatalf("%s: %d results, want 3: %+v", step, len(results), results)
		}
		for _, r := range results {
			if r.Err() != nil || !check(r.Keys) {
				t.Fatalf("%s on %s: %+v", step, r.Node, r)
			}
		}
		// the first write that starts after the step commits within a bound
		done := time.Now()
		mu.Lock()
		before := commits
		mu.Unlock()
		clustertest.Eventually(t, electBound, step+": a write commits after it", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return commits >= before+2
		})
		t.Logf("%s: done on 3 nodes; the next writes committed within %v of it", step, time.Since(done).Round(time.Millisecond))
	}
	res, err := fol.RotateKey(ctx, cluster.KeyUse, keyB)
	if !errors.Is(err, cluster.ErrKeyNotInstalled) || res != nil {
		t.Fatalf("use before install: %v, want ErrKeyNotInstalled and nothing done", err)
	}
	res, err = fol.RotateKey(ctx, cluster.KeyInstall, keyB)
	rings("install B", res, err, func(r cluster.KeyRing) bool { return r.Primary == fpA && len(r.Keys) == 2 })
	if _, err := fol.RotateKey(ctx, cluster.KeyRemove, keyA); !errors.Is(err, cluster.ErrPrimaryKey) {
		t.Fatalf("remove A while primary: %v, want ErrPrimaryKey", err)
	}
	res, err = fol.RotateKey(ctx, cluster.KeyUse, keyB)
	rings("use B", res, err, func(r cluster.KeyRing) bool { return r.Primary == fpB && len(r.Keys) == 2 })
	res, err = fol.RotateKey(ctx, cluster.KeyRemove, keyA)
	rings("remove A", res, err, func(r cluster.KeyRing) bool { return r.Primary == fpB && len(r.Keys) == 1 })
	res, err = c.Nodes[l].Agent.RotateKey(ctx, cluster.KeyList, "")
	rings("list", res, err, func(r cluster.KeyRing) bool { return r.Primary == fpB && len(r.Keys) == 1 && r.Keys[0] == fpB })

	// Writes still commit after the rotation.
	mu.Lock()
	before := commits
	mu.Unlock()
	clustertest.Eventually(t, electBound, "writes commit after the rotation", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return commits > before+5
	})
	close(stop)
	wg.Wait()
	t.Logf("writes during the rotation: %d committed, %d failed, longest commit %v", commits, failed, worst.Round(time.Millisecond))
	if worst > 5*time.Second {
		t.Fatalf("a commit took %v during the rotation", worst)
	}
	// A voter that is down is reported, not skipped in silence.
	down := (f + 1) % 3
	if down == l {
		down = (down + 1) % 3
	}
	downName := c.Nodes[down].Config.NodeName
	c.Stop(down)
	clustertest.Eventually(t, formTimeout, downName+" dead in gossip", func() bool {
		for _, m := range fol.Members() {
			if m.Name == downName {
				return m.GossipState == cluster.GossipDead
			}
		}
		return false
	})
	res, err = fol.RotateKey(ctx, cluster.KeyList, "")
	if err != nil || len(res) != 3 {
		t.Fatalf("list with %s down: %+v %v", downName, res, err)
	}
	for _, r := range res {
		if (r.Node == downName) != (r.Err() != nil) {
			t.Fatalf("list with %s down: %+v", downName, res)
		}
	}
	// Keys travel only over the admin channel: none is in any raft.db.
	for _, n := range c.Nodes {
		db, err := os.ReadFile(filepath.Join(n.Config.DataDir, "raft.db"))
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{keyA, keyB} {
			raw, _ := base64.StdEncoding.DecodeString(k)
			if bytes.Contains(db, []byte(k)) || bytes.Contains(db, raw) {
				t.Fatalf("a cluster key is in %s's raft.db", n.Config.NodeName)
			}
		}
	}
}

// adminDial opens the admin channel (ALPN redhaven-admin/1) to a with
// cert (nil: none) and sends one request; it returns the answer line or
// the error.
func adminDial(a *cluster.Agent, cert *tls.Certificate, request string) (string, error) {
	cfg := &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"redhaven-admin/1"}, MinVersion: tls.VersionTLS13}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	d := &net.Dialer{Timeout: 3 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", a.RaftAddr(), cfg)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte(request + "\n")); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return line, err
}

// TestAdminChannelRefusesStrangers: the admin channel has the Raft port's
// trust: without a certificate, or with one from another key, nothing is
// carried out and the refusal is counted; a member's certificate is
// served.
func TestAdminChannelRefusesStrangers(t *testing.T) {
	c, l, _ := startThree(t)
	leader := c.Nodes[l].Agent
	drain := `{"from":"evil","timeout_ms":3000,"leader":{"kind":"backend_state","addr":"10.0.0.7:6379","state":"drain"}}`
	before := rejected(leader, "raft", cluster.RejectNoCertificate) + rejected(leader, "raft", cluster.RejectUntrusted)
	if ans, err := adminDial(leader, nil, drain); err == nil {
		t.Fatalf("admin channel without a certificate answered %q", ans)
	}
	otherKey := clustertest.Key(t)
	evil, err := cluster.KeyCertificate(otherKey, "n1")
	if err != nil {
		t.Fatal(err)
	}
	if ans, err := adminDial(leader, &evil, drain); err == nil {
		t.Fatalf("admin channel with another key's certificate answered %q", ans)
	}
	if _, ok := leader.State().Service(svc).Admin["10.0.0.7:6379"]; ok {
		t.Fatal("a stranger's drain was carried out")
	}
	clustertest.Eventually(t, 5*time.Second, "both refusals counted", func() bool {
		return rejected(leader, "raft", cluster.RejectNoCertificate)+rejected(leader, "raft", cluster.RejectUntrusted) >= before+2
	})
	member, err := cluster.KeyCertificate(c.Key, "n9")
	if err != nil {
		t.Fatal(err)
	}
	ans, err := adminDial(leader, &member, drain)
	if err != nil || !strings.Contains(ans, `"node":"`+c.Nodes[l].Config.NodeName+`"`) || strings.Contains(ans, `"error"`) {
		t.Fatalf("admin channel with a cluster certificate: %q %v", ans, err)
	}
	if leader.State().Service(svc).Admin["10.0.0.7:6379"] != cluster.AdminDrain {
		t.Fatal("the member's drain was not carried out")
	}
}

// TestForwardInsecure: without cluster TLS there is no admin channel; a
// follower says so (ErrNoAdminChannel) instead of forwarding in clear.
func TestForwardInsecure(t *testing.T) {
	c := clustertest.New(t, 3, clustertest.Options{Insecure: true})
	c.StartAll()
	l := c.WaitLeader(formTimeout)
	waitVoters(t, c, names(3)...)
	_, err := c.Nodes[(l+1)%3].Agent.OnLeader(ctxT(t), cluster.LeaderOp{Kind: cluster.OpFailover})
	if !errors.Is(err, cluster.ErrNoAdminChannel) {
		t.Fatalf("forward without TLS: %v, want ErrNoAdminChannel", err)
	}
}

// TestForwardTransferFailure: a forwarded leadership transfer that raft
// cannot carry out (the target voter is cut off) is ErrTransferFailed, an
// expected refusal (409), not an unknown error; the leader stays and
// serves the next request.
func TestForwardTransferFailure(t *testing.T) {
	c, l, f := startThree(t)
	cut := 3 - l - f
	c.Nodes[cut].Agent.Isolate(true)
	defer c.Nodes[cut].Agent.Isolate(false)
	_, err := c.Nodes[f].Agent.OnLeader(ctxT(t), cluster.LeaderOp{Kind: cluster.OpTransferLeadership, Node: c.Nodes[cut].Config.NodeName})
	if !errors.Is(err, cluster.ErrTransferFailed) {
		t.Fatalf("transfer to an isolated voter: %v, want ErrTransferFailed", err)
	}
	if _, err := c.Nodes[f].Agent.OnLeader(ctxT(t), cluster.LeaderOp{Kind: cluster.OpBackendState, Addr: "10.0.0.8:6379", State: cluster.AdminDrain}); err != nil {
		t.Fatalf("next forwarded action: %v", err)
	}
}
