package node

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redhaven/redhaven/e2e/redistest"
	"github.com/redhaven/redhaven/e2e/testutil"
)

// TestDeposedMasterWindow (issue 13): the master is stopped (SIGSTOP)
// under writes through three agents, Sentinel fails over, and the old
// master continues (SIGCONT) at the worst moments: as soon as a replica
// answers ROLE master (promoted, before +switch-master), or as soon as
// any Sentinel names the new master. Until Sentinel reconfigures it, the
// old master still believes it is master and acknowledges what reaches
// it. The test measures, per agent, when its proxy stopped routing to
// the old master relative to the promotion, the first Sentinel's switch
// and the SIGCONT, and checks that no acknowledged write is missing from
// the final master.
func TestDeposedMasterWindow(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	for _, at := range []string{"promoted", "switched"} {
		t.Run("cont-when-"+at, func(t *testing.T) { deposedWindow(t, at) })
	}
}

func deposedWindow(t *testing.T, contAt string) {
	set := redistest.StartSet(t, redistest.SetOptions{DownAfter: time.Second})
	nodes := startAgents(t, set, 3)
	testutil.Eventually(t, 20*time.Second, "every agent routes to the master", func() bool {
		return allEqual(committedMasters(nodes), set.Master.Addr)
	})
	old := set.Master
	pid := old.PID()
	stopped := false
	t.Cleanup(func() {
		if stopped {
			_ = syscall.Kill(pid, syscall.SIGCONT)
		}
	})

	// Writers: two per agent, RPUSH of unique values on one connection.
	type result struct {
		key          string
		acked        []string
		ackedAt      []time.Time // when each acked value's reply arrived
		errs         int
		lastAckedOld time.Time // last ack while the agent still routed to the old master
	}
	stop := make(chan struct{})
	results := make([]*result, 2*len(nodes))
	var wg sync.WaitGroup
	for i := range results {
		n := nodes[i%len(nodes)]
		r := &result{key: fmt.Sprintf("dep:%s:%d", n.cfg.NodeName, i)}
		results[i] = r
		c := redis.NewClient(&redis.Options{Addr: n.ProxyAddr().String(), Protocol: 2, DisableIdentity: true, MaxRetries: -1,
			PoolSize: 1, ReadTimeout: 20 * time.Second, WriteTimeout: 20 * time.Second, DialTimeout: time.Second})
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			for seq := 0; seq < 1_000_000; seq++ {
				select {
				case <-stop:
					return
				default:
				}
				v := fmt.Sprintf("%s-%d", r.key, seq)
				if err := c.RPush(context.Background(), r.key, v).Err(); err != nil {
					r.errs++
					continue
				}
				r.acked = append(r.acked, v)
				r.ackedAt = append(r.ackedAt, time.Now())
				if n.services[0].routes.Route().Master == old.Addr {
					r.lastAckedOld = time.Now()
				}
			}
		}()
	}
	time.Sleep(time.Second) // traffic before the fault (not a synchronisation)

	// Watch: promotion (a replica answers ROLE master), the first
	// Sentinel naming another master, and each agent leaving the old one.
	dial := func(addr string) *redis.Client {
		return redis.NewClient(&redis.Options{Addr: addr, Protocol: 2, DisableIdentity: true, MaxRetries: -1,
			DialTimeout: 200 * time.Millisecond, ReadTimeout: 200 * time.Millisecond})
	}
	var replicas, sentinels []*redis.Client
	for _, r := range set.Replicas {
		replicas = append(replicas, dial(r.Addr))
	}
	for _, s := range set.Sentinels {
		sentinels = append(sentinels, dial(s.Addr))
	}
	defer func() {
		for _, c := range append(replicas, sentinels...) {
			c.Close()
		}
	}()
	var promoted, switched time.Time
	poll := func() {
		if promoted.IsZero() {
			for _, c := range replicas {
				if role, err := c.Do(context.Background(), "ROLE").Slice(); err == nil && len(role) > 0 && role[0] == "master" {
					promoted = time.Now()
				}
			}
		}
		if switched.IsZero() {
			for _, c := range sentinels {
				res, err := c.Do(context.Background(), "SENTINEL", "GET-MASTER-ADDR-BY-NAME", set.MasterName).StringSlice()
				if err == nil && len(res) == 2 && net.JoinHostPort(res[0], res[1]) != old.Addr {
					switched = time.Now()
				}
			}
		}
	}
	// Each agent's route, every millisecond on its own goroutine: when it
	// last named the old master.
	lastOld := make([]time.Time, len(nodes))
	var lastMu sync.Mutex
	routeStop := make(chan struct{})
	routeDone := make(chan struct{})
	go func() {
		defer close(routeDone)
		for k := 0; k < 600_000; k++ {
			select {
			case <-routeStop:
				return
			case <-time.After(time.Millisecond):
			}
			now := time.Now()
			lastMu.Lock()
			for i, n := range nodes {
				if n.services[0].routes.Route().Master == old.Addr {
					lastOld[i] = now
				}
			}
			lastMu.Unlock()
		}
	}()

	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatalf("SIGSTOP: %v", err)
	}
	stopped = true
	stoppedAt := time.Now()
	testutil.EventuallyEvery(t, 30*time.Second, time.Millisecond, "Sentinel fails over ("+contAt+")", func() bool {
		poll()
		if contAt == "promoted" {
			return !promoted.IsZero()
		}
		return !switched.IsZero()
	})
	beforeCont := time.Now() // a reply that arrived before this was processed before the SIGSTOP
	if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
		t.Fatalf("SIGCONT: %v", err)
	}
	stopped = false
	contAtTime := time.Now()
	testutil.EventuallyEvery(t, 30*time.Second, 2*time.Millisecond, "every agent leaves the old master and Sentinel switches", func() bool {
		poll()
		if switched.IsZero() || promoted.IsZero() {
			return false
		}
		for _, n := range nodes {
			if n.services[0].routes.Route().Master == old.Addr {
				return false
			}
		}
		return true
	})
	close(routeStop)
	<-routeDone
	// Writes go on until the old master follows the new one.
	var master string
	testutil.Eventually(t, 40*time.Second, "the old master replicates the new one", func() bool {
		master = set.CurrentMaster()
		oc := old.Client()
		defer oc.Close()
		info, err := oc.Info(context.Background(), "replication").Result()
		return err == nil && master != old.Addr && strings.Contains(info, "master_link_status:up") &&
			strings.Contains(info, "master_port:"+master[strings.LastIndexByte(master, ':')+1:])
	})
	time.Sleep(500 * time.Millisecond)
	close(stop)
	waitGroupDone(t, &wg, 30*time.Second)

	rel := func(x time.Time) string {
		if x.IsZero() {
			return "never"
		}
		return fmt.Sprintf("%+dms", x.Sub(switched).Milliseconds())
	}
	t.Logf("SIGSTOP at %s, promoted %s, SIGCONT %s (all relative to the first Sentinel's switch)",
		rel(stoppedAt), rel(promoted), rel(contAtTime))
	for i, n := range nodes {
		t.Logf("%s (leader %v): route last named %s at %s", n.cfg.NodeName, n.cluster.IsLeader(), old.Addr, rel(lastOld[i]))
		if lastOld[i].After(contAtTime) {
			t.Errorf("%s still routed to the old master %v after it continued", n.cfg.NodeName, lastOld[i].Sub(contAtTime))
		}
	}
	mc := set.ByAddr(master).Client()
	defer mc.Close()
	acked, lost, errs, atStop := 0, 0, 0, 0
	for _, r := range results {
		final, err := mc.LRange(context.Background(), r.key, 0, -1).Result()
		if err != nil {
			t.Fatalf("LRANGE %s on %s: %v", r.key, master, err)
		}
		present := map[string]bool{}
		for _, v := range final {
			present[v] = true
		}
		var missing, replication []string
		for i, v := range r.acked {
			switch {
			case present[v]:
			case r.ackedAt[i].Before(beforeCont):
				// Processed before the SIGSTOP and not yet sent to the
				// replica that was promoted: Redis's asynchronous
				// replication, whatever routes the writes.
				replication = append(replication, v)
			default:
				missing = append(missing, v)
			}
		}
		if len(replication) > 0 {
			t.Logf("%s: %d acknowledged before the SIGSTOP and not replicated (Redis's asynchronous replication): %s", r.key, len(replication),
				strings.Join(replication[:min(len(replication), 10)], " "))
			if len(replication) > 20 {
				t.Errorf("%s: %d values acknowledged before the SIGSTOP are missing: more than replication lag explains", r.key, len(replication))
			}
		}
		atStop += len(replication)
		if len(missing) > 0 {
			t.Errorf("%s: %d acknowledged values missing on the final master %s: %s", r.key, len(missing), master,
				strings.Join(missing[:min(len(missing), 10)], " "))
		}
		acked += len(r.acked)
		lost += len(missing)
		errs += r.errs
		if !r.lastAckedOld.IsZero() {
			t.Logf("%s: last write acknowledged while its agent routed to the old master: %s", r.key, rel(r.lastAckedOld))
		}
	}
	t.Logf("master %s -> %s: %d acked, %d errors, %d acked but lost, %d not replicated at the SIGSTOP", old.Addr, master, acked, errs, lost, atStop)
	if acked == 0 {
		t.Fatal("no write acknowledged")
	}
}

func waitGroupDone(t *testing.T, wg *sync.WaitGroup, d time.Duration) {
	t.Helper()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("writers still running after %v", d)
	}
}
