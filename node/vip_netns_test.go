//go:build linux

package node

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/redhaven/redhaven/e2e/redistest"
	"github.com/redhaven/redhaven/e2e/testutil"
)

// The VIP, in the lab's LAN (see netns_helpers_test.go).
const (
	labVIP      = labSubnet + ".100"
	labVIPCIDR  = labVIP + "/24"
	labLifetime = 2 * time.Second
)

// vipSampler reads, every 50 ms (or every), which node namespaces carry
// the VIP on eth0 (through netlink, all namespaces within microseconds of
// each other) and counts the samples in which two or more hold it. A node
// marked dead (cut off from the LAN) does not count as a holder.
type vipSampler struct {
	handles []*netlink.Handle // one per node, used by the sampler goroutine only
	links   []netlink.Link
	vip     netip.Addr
	started time.Time
	every   time.Duration

	mu      sync.Mutex
	last    []int // indexes of the holders in the last sample
	samples int
	doubles int // samples with two or more holders
	errs    int
	lastErr error
	changes []holderChange // every change of the holder set, bounded
	dead    map[int]bool   // nodes cut off from the LAN: their copy answers nobody

	stop chan struct{}
	done chan struct{}
}

// holderChange is the holder set from time at on.
type holderChange struct {
	at      time.Time
	holders []int
}

// startVIPSampler starts the sampler; it stops at cleanup (or by Stop),
// and after maxRun whatever happens.
func startVIPSampler(t *testing.T, lab *netLab, vip netip.Addr, maxRun time.Duration) *vipSampler {
	t.Helper()
	return startVIPSamplerEvery(t, lab, vip, maxRun, 50*time.Millisecond)
}

// startVIPSamplerEvery is startVIPSampler with another interval.
func startVIPSamplerEvery(t *testing.T, lab *netLab, vip netip.Addr, maxRun, every time.Duration) *vipSampler {
	t.Helper()
	s := &vipSampler{vip: vip, started: time.Now(), every: every, dead: map[int]bool{},
		stop: make(chan struct{}), done: make(chan struct{})}
	for _, h := range lab.nodes {
		nh := nsHandle(t, h.ns)
		link, err := nh.LinkByName("eth0")
		if err != nil {
			t.Fatalf("eth0 in %s: %v", h.ns, err)
		}
		s.handles, s.links = append(s.handles, nh), append(s.links, link)
	}
	go s.run(maxRun)
	t.Cleanup(s.Stop) // registered after the handles' cleanups: runs before them
	return s
}

func (s *vipSampler) run(maxRun time.Duration) {
	defer close(s.done)
	tick := time.NewTicker(s.every)
	defer tick.Stop()
	end := time.After(maxRun)
	for i := 0; i < int(maxRun/s.every)+1; i++ {
		s.sample()
		select {
		case <-s.stop:
			return
		case <-end:
			return
		case <-tick.C:
		}
	}
}

func (s *vipSampler) sample() {
	var holders []int
	var sampleErr error
	for i := range s.handles {
		held, err := hasAddr(s.handles[i], s.links[i], s.vip)
		if err != nil {
			sampleErr = err
			continue
		}
		if held {
			holders = append(holders, i)
		}
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	holders = slices.DeleteFunc(holders, func(i int) bool { return s.dead[i] })
	if sampleErr != nil {
		s.errs++
		s.lastErr = sampleErr
		return // an incomplete sample proves nothing either way
	}
	s.samples++
	if len(holders) >= 2 {
		s.doubles++
	}
	if s.samples == 1 || !slices.Equal(holders, s.last) {
		if len(s.changes) < 1000 {
			s.changes = append(s.changes, holderChange{at: now, holders: holders})
		}
	}
	s.last = holders
}

// setDead marks node i as cut off from the LAN (or back).
func (s *vipSampler) setDead(i int, dead bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if dead {
		s.dead[i] = true
	} else {
		delete(s.dead, i)
	}
}

// counts returns the number of samples and of samples with two holders.
func (s *vipSampler) counts() (samples, doubles int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.samples, s.doubles
}

// Stop ends sampling and waits for the goroutine; safe to call twice.
func (s *vipSampler) Stop() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
}

// holders returns the last sample's holders and since when they hold.
func (s *vipSampler) holders() ([]int, time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var since time.Time
	if n := len(s.changes); n > 0 {
		since = s.changes[n-1].at
	}
	return slices.Clone(s.last), since
}

// changedAfter returns the first change at or after t whose holders
// satisfy match.
func (s *vipSampler) changedAfter(t time.Time, match func([]int) bool) (holderChange, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.changes {
		if !c.at.Before(t) && match(c.holders) {
			return c, true
		}
	}
	return holderChange{}, false
}

// changesSince returns the changes of the holder set from t on.
func (s *vipSampler) changesSince(t time.Time) []holderChange {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []holderChange
	for _, c := range s.changes {
		if !c.at.Before(t) {
			out = append(out, c)
		}
	}
	return out
}

func (s *vipSampler) history(names func(int) string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b strings.Builder
	var start time.Time
	for i, c := range s.changes {
		if i == 0 {
			start = c.at
		}
		hs := make([]string, len(c.holders))
		for j, h := range c.holders {
			hs[j] = names(h)
		}
		fmt.Fprintf(&b, "  +%v holders=%v\n", c.at.Sub(start).Round(time.Millisecond), hs)
	}
	return b.String()
}

// agentStats is the part of GET /api/v1/stats this test reads.
type agentStats struct {
	Node   string `json:"node"`
	Ready  bool   `json:"ready"`
	Leader bool   `json:"leader"`
	Route  struct {
		Master string `json:"master"`
	} `json:"route"`
	VIP struct {
		Holder   string `json:"holder"`
		HeldHere bool   `json:"held_here"`
	} `json:"vip"`
}

// statsFrom fetches a node's stats from inside the client namespace.
func statsFrom(lab *netLab, h *labHost) (agentStats, error) {
	var st agentStats
	out, err := nsRun(5*time.Second, lab.client.ns, "curl", "-sS", "--fail", "--max-time", "2",
		"http://"+h.ip+":8404/api/v1/stats")
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		return st, fmt.Errorf("stats from %s: %w", h.name, err)
	}
	return st, nil
}

// waitVIPSettled waits until every agent serves (ready) and one node has
// held the VIP for a second, and returns that node; an agent that exits
// meanwhile fails the test.
func waitVIPSettled(t *testing.T, lab *netLab, sampler *vipSampler, agents []*nsProc, what string) int {
	t.Helper()
	var holder int
	testutil.EventuallyEvery(t, 60*time.Second, 100*time.Millisecond, what+": every agent ready, one VIP holder for 1 s", func() bool {
		for _, p := range agents {
			if p.exited() {
				t.Fatalf("%s exited:\n%s", p.name, p.tail(30, false))
			}
		}
		hs, since := sampler.holders()
		if len(hs) != 1 || time.Since(since) < time.Second {
			return false
		}
		for _, h := range lab.nodes {
			if st, err := statsFrom(lab, h); err != nil || !st.Ready {
				return false
			}
		}
		holder = hs[0]
		return true
	})
	return holder
}

// clientRedis runs redis-cli in the client namespace against the VIP.
func clientRedis(lab *netLab, args ...string) (string, error) {
	out, err := nsRun(10*time.Second, lab.client.ns,
		append([]string{"redis-cli", "-h", labVIP, "-p", "6380"}, args...)...)
	return strings.TrimSpace(out), err
}

// labClusterKey is the lab's cluster key (cluster.encrypt; a test key,
// used only inside the network namespaces).
const labClusterKey = "HLY2uGX6crUzdcoe7aDXESxIoi0jflIf0T126BEUtZo="

// agentYAML is one node's config file.
func agentYAML(h *labHost, dataDir string, sentinels []string, seed string) string {
	return fmt.Sprintf(`node_name: %s
data_dir: %q
redis:
  master_name: mymaster
  sentinels: [%s]
  check_interval: 100ms
proxy:
  listen: ":6380"
cluster:
  bind: "%s:7946"
  raft_bind: "%s:7947"
  join: ["%s:7946"]
  bootstrap_expect: 3
  encrypt: %q
vip:
  mode: netlink
  address: %q
  interface: eth0
  lifetime: %s
http:
  listen: "%s:8404"
  admin_socket: ""
log:
  level: debug
`, h.name, dataDir, `"`+strings.Join(sentinels, `", "`)+`"`, h.ip, h.ip, seed, labClusterKey, labVIPCIDR, labLifetime, h.ip)
}

// TestNetnsVIPFollowsLeaderKill9 runs three real agents (the built
// binary) in three network namespaces on one bridge, with a Redis master,
// two replicas and three Sentinels among them, and a client in a fourth
// namespace. Exactly one namespace holds the VIP, and it is the Raft
// leader's; the client reaches Redis through VIP -> proxy -> master.
// After kill -9 of the holder's agent the VIP appears in another
// namespace, the client's neighbour entry follows to the new MAC by
// gratuitous ARP before the client sends anything, the client reaches
// Redis again without flushing its cache, and no sample (every 50 ms,
// throughout) ever sees two holders.
func TestNetnsVIPFollowsLeaderKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	requireNetnsLab(t)
	redistest.RequireRedis(t)
	for _, bin := range []string{"curl", "redis-cli"} {
		if _, err := exec.LookPath(bin); err != nil {
			testutil.Require(t, "netns", bin+" not on PATH (apt-get install curl redis-tools)")
		}
	}
	began := time.Now()
	tmp := t.TempDir()
	bin := buildAgentBinary(t, tmp)
	t.Logf("built %s in %v", bin, time.Since(began).Round(time.Millisecond))

	lab := newNetLab(t, 3)
	vip := netip.MustParseAddr(labVIP)
	rs := startLabRedis(t, lab)
	sampler := startVIPSampler(t, lab, vip, 90*time.Second)
	name := func(i int) string { return lab.nodes[i].name }

	// Agents: stopped together (SIGTERM, then SIGKILL after a bound) by a
	// cleanup registered before the first one starts.
	agents := make([]*nsProc, len(lab.nodes))
	t.Cleanup(func() {
		if killed := stopNSProcs(agents, 15*time.Second); len(killed) > 0 {
			t.Errorf("agents that needed SIGKILL after SIGTERM: %v", killed)
		}
		if t.Failed() {
			for _, p := range agents {
				if p != nil {
					t.Logf("%s log (last lines, no debug):\n%s", p.name, p.tail(60, false))
				}
			}
			t.Logf("VIP holder history:\n%s", sampler.history(name))
		}
	})
	env := agentEnv()
	for i, h := range lab.nodes {
		dir := filepath.Join(tmp, h.name)
		if err := os.MkdirAll(filepath.Join(dir, "data"), 0o700); err != nil {
			t.Fatal(err)
		}
		cfg := filepath.Join(dir, "redhaven.yaml")
		if err := os.WriteFile(cfg, []byte(agentYAML(h, filepath.Join(dir, "data"), rs.sentinels, lab.nodes[0].ip)), 0o600); err != nil {
			t.Fatal(err)
		}
		agents[i] = startNSProc(t, "agent-"+h.name, h.ns, filepath.Join(dir, "agent.log"), env, bin, "agent", "-c", cfg)
	}
	started := time.Now()

	// Exactly one namespace holds the VIP once the cluster settles (the
	// same one for a full second).
	var holder int
	testutil.EventuallyEvery(t, 30*time.Second, 50*time.Millisecond, "exactly one namespace holds the VIP for 1s", func() bool {
		for _, p := range agents {
			if p.exited() {
				t.Fatalf("%s exited early:\n%s", p.name, p.tail(30, false))
			}
		}
		hs, since := sampler.holders()
		if len(hs) != 1 || time.Since(since) < time.Second {
			return false
		}
		holder = hs[0]
		return true
	})
	t.Logf("agents started -> VIP held by %s only after %v", name(holder), time.Since(started).Round(time.Millisecond))

	// The holder is the Raft leader, and the only one.
	testutil.EventuallyEvery(t, 10*time.Second, 200*time.Millisecond, "the VIP holder is the one Raft leader", func() bool {
		leaders := 0
		for i, h := range lab.nodes {
			st, err := statsFrom(lab, h)
			if err != nil {
				return false
			}
			if st.Node != h.name {
				t.Fatalf("stats of %s name node %q", h.name, st.Node)
			}
			if st.Leader {
				leaders++
				if i != holder || !st.VIP.HeldHere {
					return false
				}
			}
		}
		return leaders == 1
	})

	// A client reaches the master through the VIP and the holder's proxy.
	var out string
	var err error
	testutil.EventuallyEvery(t, 10*time.Second, 200*time.Millisecond, "SET through the VIP", func() bool {
		out, err = clientRedis(lab, "SET", "netns:k", "v1")
		return err == nil && out == "OK"
	})
	if got, err := nsRun(5*time.Second, lab.nodes[0].ns, "redis-cli", "-h", lab.nodes[0].ip, "-p", "6379", "GET", "netns:k"); err != nil || strings.TrimSpace(got) != "v1" {
		t.Fatalf("master has netns:k = %q (%v), want v1 written through the VIP", got, err)
	}

	// The client's neighbour entry for the VIP is the holder's MAC.
	ch := nsHandle(t, lab.client.ns)
	clientLink, err := ch.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	oldMAC := lab.nodes[holder].mac.String()
	mac, _, err := neighMAC(ch, clientLink.Attrs().Index, vip)
	if err != nil || mac != oldMAC {
		t.Fatalf("client's neighbour entry for the VIP: %q (%v), want the holder %s's %s", mac, err, name(holder), oldMAC)
	}

	// kill -9 the holder's agent: its kernel keeps the address until the
	// lifetime runs out; the new leader must wait for that.
	old := holder
	killed := time.Now()
	agents[old].kill()
	t.Logf("kill -9 %s (pid %d)", agents[old].name, agents[old].cmd.Process.Pid)

	var moved holderChange
	testutil.EventuallyEvery(t, 20*time.Second, 20*time.Millisecond, "the VIP in another namespace", func() bool {
		var ok bool
		moved, ok = sampler.changedAfter(killed, func(hs []int) bool {
			return slices.ContainsFunc(hs, func(i int) bool { return i != old })
		})
		return ok
	})
	var newHolder int
	for _, i := range moved.holders {
		if i != old {
			newHolder = i
		}
	}
	moveTime := moved.at.Sub(killed)

	// Gratuitous ARP: the client's entry moves to the new holder's MAC
	// while the client sends nothing.
	newMAC := lab.nodes[newHolder].mac.String()
	var state int
	testutil.EventuallyEvery(t, 10*time.Second, 10*time.Millisecond, "client's neighbour entry follows to "+name(newHolder)+" without client traffic", func() bool {
		mac, state, err = neighMAC(ch, clientLink.Attrs().Index, vip)
		return err == nil && mac == newMAC
	})
	neighFollowed := time.Since(killed)
	neighOut, _ := nsRun(5*time.Second, lab.client.ns, "ip", "neigh", "show", labVIP)

	// The old copy is gone (lifetime) and only the new holder remains.
	var gone holderChange
	testutil.EventuallyEvery(t, 10*time.Second, 20*time.Millisecond, "only "+name(newHolder)+" holds the VIP", func() bool {
		var ok bool
		gone, ok = sampler.changedAfter(killed, func(hs []int) bool { return !slices.Contains(hs, old) })
		hs, _ := sampler.holders()
		return ok && slices.Equal(hs, []int{newHolder})
	})

	// The client reaches Redis again through the VIP, same cache.
	testutil.EventuallyEvery(t, 10*time.Second, 200*time.Millisecond, "GET through the VIP after the move", func() bool {
		out, err = clientRedis(lab, "GET", "netns:k")
		return err == nil && out == "v1"
	})
	if out, err := clientRedis(lab, "SET", "netns:k2", "v2"); err != nil || out != "OK" {
		t.Fatalf("SET through the VIP after the move: %q %v", out, err)
	}

	// The new holder is the new Raft leader.
	testutil.EventuallyEvery(t, 10*time.Second, 200*time.Millisecond, name(newHolder)+" is the Raft leader", func() bool {
		st, err := statsFrom(lab, lab.nodes[newHolder])
		return err == nil && st.Leader && st.VIP.HeldHere
	})

	sampler.Stop()
	sampler.mu.Lock()
	samples, doubles, serrs, lastErr := sampler.samples, sampler.doubles, sampler.errs, sampler.lastErr
	sampler.mu.Unlock()

	t.Logf("VIP move after kill -9 of %s's agent: %v (to %s; vip.lifetime %v); old copy gone after %v; "+
		"client neighbour entry on the new MAC after %v (%s, state %#x)",
		name(old), moveTime.Round(time.Millisecond), name(newHolder), labLifetime,
		gone.at.Sub(killed).Round(time.Millisecond), neighFollowed.Round(time.Millisecond), strings.TrimSpace(neighOut), state)
	t.Logf("sampler: %d samples every 50ms, %d with two holders, %d failed reads (last: %v)", samples, doubles, serrs, lastErr)
	t.Logf("VIP holder history:\n%s", sampler.history(name))
	if doubles != 0 {
		t.Errorf("%d samples saw two namespaces holding the VIP, want 0", doubles)
	}
	if want := int(time.Since(sampler.started)/(50*time.Millisecond)) / 4; samples < 20 || samples < want {
		t.Errorf("only %d samples; the sampler did not run every 50 ms", samples)
	}
}
