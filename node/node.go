// Package node builds every part of a redhaven agent from its config,
// starts and stops them in order, and carries state between them. Policy
// (which master the proxies follow, who holds the VIP) lives here;
// mechanism lives in the leaves.
package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/redhaven/redhaven/cluster"
	"github.com/redhaven/redhaven/proxy"
	"github.com/redhaven/redhaven/proxy/topology"
	"github.com/redhaven/redhaven/vip"
	"github.com/redhaven/redhaven/webui"
)

// Version is the agent's version, set by cmd from the build.
var Version = "dev"

// Node is one redhaven agent.
type Node struct {
	cfg     Config
	logger  *slog.Logger
	started time.Time

	watcher *topology.Watcher
	proxy   *proxy.Server
	cluster *cluster.Agent
	vip     *vip.Manager
	web     *webui.Server

	routes *routeTable
	// maxReplicaLag is redis.max_replica_lag, changed by a reload.
	maxReplicaLag atomic.Int64
	lease         vipLease // the VIP lease policy (vip_lease.go)

	mu             sync.Mutex
	masterLost     time.Time             // when the leader's watcher lost the committed master; zero when it has one
	failovers      webui.FailoverStats   // durations of failovers this node committed as leader
	unhealthySince time.Time             // leader without a routable master since
	planned        *plannedFailover      // the planned failover this leader is running, if any
	rates          map[string]rateSample // last commands counter per listener, for commands/s
	trust          routeTrust            // last check of the committed route against the local observation
	seed           *seedRoute            // the route handed over by the previous process (handover.go)
}

// New validates cfg and builds every part. It binds the listeners (so
// Addr methods work) but starts nothing.
func New(cfg Config, logger *slog.Logger) (*Node, error) {
	return NewInherited(cfg, logger, nil)
}

// NewInherited is New for a process that takes over from the agent that
// ran before it (handover.go); in may be nil.
func NewInherited(cfg Config, logger *slog.Logger, in *Inherited) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, logger: logger, routes: newRouteTable(), started: time.Now(), rates: map[string]rateSample{}}
	n.lease.leave = make(chan chan struct{})
	n.maxReplicaLag.Store(cfg.Redis.MaxReplicaLag)
	var err error
	if n.watcher, err = topology.New(cfg.Redis, logger); err != nil {
		return nil, fmt.Errorf("watcher: %w", err)
	}
	pcfg := cfg.Proxy
	pcfg.BackendUsername, pcfg.BackendPassword = cfg.Redis.Username, cfg.Redis.Password
	if pcfg.BackendTLS, err = cfg.Redis.TLS.ClientConfig(); err != nil {
		return nil, err
	}
	if n.seed = in.seed(); n.seed != nil {
		n.routes.set(n.seed.route)
	}
	if n.proxy, err = proxy.NewFromHandoff(pcfg, n.routes, logger, in.proxyHandoff()); err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	if n.web, err = webui.New(cfg.HTTP, (*webSource)(n), (*webAdmin)(n), logger); err != nil {
		n.closeListeners()
		return nil, fmt.Errorf("http: %w", err)
	}
	ccfg := cfg.Cluster
	ccfg.NodeName, ccfg.DataDir, ccfg.Version = cfg.NodeName, cfg.DataDir, Version
	ccfg.HTTPAddr = n.web.Addr().String()
	if n.cluster, err = cluster.New(ccfg, logger); err != nil {
		n.closeListeners()
		return nil, fmt.Errorf("cluster: %w", err)
	}
	if n.vip, err = vip.New(cfg.VIP, logger); err != nil {
		n.closeListeners()
		return nil, fmt.Errorf("vip: %w", err)
	}
	n.adoptVIP(in) // vip_lease.go: the previous process's VIP lease, before vip.Run
	return n, nil
}

// closeListeners frees what New bound when New fails half way.
func (n *Node) closeListeners() {
	if n.web != nil {
		_ = n.web.Close()
	}
	if n.proxy != nil {
		_ = n.proxy.Close()
	}
	if n.cluster != nil {
		_ = n.cluster.Close()
	}
}

// ReloadTLS reads proxy.tls's certificate files again (SIGHUP).
func (n *Node) ReloadTLS() error { return n.proxy.ReloadTLS() }

// ProxyAddr is the read-write listener's address.
func (n *Node) ProxyAddr() net.Addr { return n.proxy.Addr() }

// ReadonlyAddr is the read-only listener's address, nil when off.
func (n *Node) ReadonlyAddr() net.Addr { return n.proxy.ReadonlyAddr() }

// HTTPAddr is the stats page / API address.
func (n *Node) HTTPAddr() net.Addr { return n.web.Addr() }

// Cluster exposes the cluster agent (tests and the CLI's API use it).
func (n *Node) Cluster() *cluster.Agent { return n.cluster }

// errClusterStopped: the cluster agent returned without an error while the
// node was still meant to run.
var errClusterStopped = errors.New("cluster stopped")

// Run starts every part and blocks until ctx ends or a part fails. On the
// way out it first stops serving (the VIP is released by vip.Run, the
// proxy closes its sessions), then leaves the cluster.
func (n *Node) Run(ctx context.Context) error {
	n.logger.Info("agent starting", "node", n.cfg.NodeName, "version", Version,
		"proxy_listen", n.proxy.Addr().String(), "http_listen", n.web.Addr().String(),
		"sentinels", n.cfg.Redis.Sentinels, "vip", n.cfg.VIP.Address)

	// The cluster outlives the serving parts so that shutdown is ordered:
	// serving stops first, then the node leaves.
	clusterCtx, stopCluster := context.WithCancel(context.WithoutCancel(ctx))
	defer stopCluster()
	clusterDone := make(chan error, 1)
	go func() { clusterDone <- n.cluster.Run(clusterCtx) }()

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return n.watcher.Run(gctx) })
	g.Go(func() error { return n.proxy.Run(gctx) })
	g.Go(func() error { return n.web.Run(gctx) })
	g.Go(func() error { return n.vip.Run(gctx) })
	g.Go(func() error { return n.decide(gctx) })
	g.Go(func() error { return n.leaseLoop(gctx) })
	g.Go(func() error {
		select {
		case err := <-clusterDone:
			clusterDone <- err
			if err != nil {
				return fmt.Errorf("cluster: %w", err)
			}
			return errClusterStopped
		case <-gctx.Done():
			return nil
		}
	})
	err := g.Wait()
	stopCluster()
	if cerr := <-clusterDone; cerr != nil && err == nil {
		err = fmt.Errorf("cluster: %w", cerr)
	}
	if ctx.Err() != nil && errors.Is(err, errClusterStopped) {
		err = nil // the cluster ended because we are shutting down
	}
	n.logger.Info("agent stopped")
	return err
}

// decide is the policy loop. Level-triggered: on every hint from the
// watcher or the cluster, and on a ticker, it re-reads the real state and
//   - as Raft leader, commits the watcher's confirmed master as the route
//     and runs planned failovers;
//   - on every node, routes to the committed master only while the node is
//     in contact with the quorum and its own watcher does not contradict
//     that master (topology.Observation.Contradicts);
//   - tells the VIP lease (vip_lease.go) whether this node may hold the VIP.
func (n *Node) decide(ctx context.Context) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		n.step(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-n.watcher.Changes():
		case <-n.cluster.Changes():
		case <-tick.C:
		}
	}
}

// step is one pass of the policy loop.
func (n *Node) step(ctx context.Context) {
	obs := n.watcher.Observation()
	leader := n.cluster.IsLeader()
	if leader {
		n.leaderStep(ctx, obs)
	}
	st := n.cluster.State()
	// Second safety net (DESIGN.md "Trust"): the committed master is
	// followed only while this node's own watcher does not contradict it.
	chk := checkRoute(obs, st.Route)
	if n.noteRouteCheck(chk, st.Route) {
		n.watcher.Recheck(st.Route.Master) // a stale "replica" answer clears in one probe
	}
	r := proxy.Route{}
	if n.cluster.InContact() && st.Route.Master != "" && chk.contradicted == "" {
		r.Master, r.Epoch = st.Route.Master, st.Route.Epoch
		r.Replicas = routeFromObservation(topology.Observation{Master: r.Master, Nodes: obs.Nodes}, n.maxReplicaLag.Load()).Replicas
		r.Replicas = withoutAdmin(r.Replicas, st.Admin)
	}
	r = n.seeded(r, n.cluster.InContact(), chk.contradicted != "")
	if n.routes.set(r) {
		n.logger.Info("route changed", "master_addr", r.Master, "epoch", r.Epoch, "in_contact", n.cluster.InContact(),
			"reason", st.Route.Reason, "contradicted", chk.contradicted, "replicas", r.Replicas)
	}
	vipContra := chk.contradicted
	if chk.staleBySentinel {
		vipContra = "" // shared by every node during a failover: keep the VIP where it is
	}
	n.lease.mayServe.Store(n.mayHoldVIP(st, vipContra))
	n.checkLeaderHealth(ctx, leader, obs)
}

// leaderStep commits the watcher's confirmed master, unless a planned
// failover is in charge of the route.
func (n *Node) leaderStep(ctx context.Context, obs topology.Observation) {
	st := n.cluster.State()
	if req, ok := st.PendingFailover(); ok {
		n.runPlannedFailover(ctx, req)
		return
	}
	n.mu.Lock()
	if obs.Master == "" && st.Route.Master != "" && n.masterLost.IsZero() {
		n.masterLost = time.Now()
	}
	n.mu.Unlock()
	if obs.Master == "" || obs.Master == st.Route.Master {
		if obs.Master != "" {
			n.mu.Lock()
			n.masterLost = time.Time{}
			n.mu.Unlock()
		}
		return
	}
	epoch := obs.Epoch
	if len(n.cfg.Redis.Sentinels) == 0 && epoch <= st.Route.Epoch {
		// Without Sentinel each watcher counts its own epochs; the
		// committed sequence must still only move forward.
		epoch = st.Route.Epoch + 1
	}
	d := cluster.RouteDecision{Master: obs.Master, Epoch: epoch, Reason: obs.Reason}
	if ok, _ := d.Replaces(st.Route); !ok {
		return // an older view than what is committed: never go back
	}
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := n.cluster.ProposeRoute(cctx, d); err != nil {
		n.logger.Warn("commit route failed", "master_addr", d.Master, "epoch", d.Epoch, "err", err)
		return
	}
	n.mu.Lock()
	lost := n.masterLost
	n.masterLost = time.Time{}
	n.mu.Unlock()
	if st.Route.Master != "" {
		ev := cluster.Event{Time: time.Now(), Kind: cluster.EventFailover, Node: n.cfg.NodeName,
			Message: fmt.Sprintf("master %s -> %s (epoch %d, %s)", st.Route.Master, d.Master, d.Epoch, d.Reason)}
		if !lost.IsZero() {
			ev.Duration = time.Since(lost)
			n.mu.Lock()
			n.failovers.Observe(ev.Duration)
			n.mu.Unlock()
		}
		_ = n.cluster.RecordEvent(cctx, ev)
	}
}

// checkLeaderHealth hands leadership (and with it the VIP) to another
// node when this leader has been unable to route for a while although
// other voters exist: e.g. it lost every Sentinel and every Redis node.
func (n *Node) checkLeaderHealth(ctx context.Context, leader bool, obs topology.Observation) {
	healthy := !leader || n.routes.Route().Master != "" && reachesSomething(obs)
	n.mu.Lock()
	if healthy || n.planned != nil {
		n.unhealthySince = time.Time{}
		n.mu.Unlock()
		return
	}
	if n.unhealthySince.IsZero() {
		n.unhealthySince = time.Now()
	}
	since := n.unhealthySince
	n.mu.Unlock()
	if time.Since(since) < leaderUnhealthyGrace {
		return
	}
	voters := 0
	for _, m := range n.cluster.Members() {
		if m.Suffrage == "voter" && m.GossipState == "alive" && !m.Self {
			voters++
		}
	}
	if voters == 0 {
		return
	}
	n.logger.Warn("leader cannot route; transferring leadership", "unhealthy_for", time.Since(since).Round(time.Millisecond))
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := n.cluster.TransferLeadership(cctx, ""); err != nil {
		n.logger.Warn("leadership transfer failed", "err", err)
	}
	n.mu.Lock()
	n.unhealthySince = time.Time{}
	n.mu.Unlock()
}

// leaderUnhealthyGrace is how long a leader may be unable to route before
// it hands leadership over; longer than a Sentinel failover.
const leaderUnhealthyGrace = 10 * time.Second

// reachesSomething reports whether this node sees any Sentinel or Redis node.
func reachesSomething(obs topology.Observation) bool {
	for _, s := range obs.Sentinels {
		if s.Reachable {
			return true
		}
	}
	for _, nd := range obs.Nodes {
		if nd.Up {
			return true
		}
	}
	return false
}

// withoutAdmin drops replicas an operator put in drain or maintenance.
func withoutAdmin(addrs []string, admin map[string]cluster.AdminState) []string {
	out := addrs[:0:0]
	for _, a := range addrs {
		if s := admin[a]; s == cluster.AdminDrain || s == cluster.AdminMaintenance {
			continue
		}
		out = append(out, a)
	}
	return out
}

// NewLogger builds the agent's logger from the log section.
func NewLogger(c LogConfig, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
