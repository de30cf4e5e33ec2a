// Package node builds every part of a redhaven agent from its config,
// starts and stops them in order, and carries state between them. Policy
// (which master the proxies follow, who holds the VIP) lives here;
// mechanism lives in the leaves.
//
// An agent runs every service of its config (service.go): each has its
// own watcher, proxy listeners, route and policy loop, and its state in
// the cluster under its name. The VIP rules (vips.go): a service with its
// own `vip:` has its own VIP, which a node may hold or claim only while
// it may serve that service; the services without one share the vip
// section's VIP, which a node may hold or claim only while it may serve
// every service that shares it (every service, when all have their own).
// Each VIP has its own lease in the cluster, keyed by the service's name
// ("" for the shared one), granted, renewed, taken over and released on
// its own; so a service this node cannot route moves that service's VIP
// and no other, and only to a better placed node: the holder keeps the
// VIP while no other node routes that service either (a Sentinel
// failover), and releases it once another node has routed the committed
// master for vip_lease/4 while it could not (vip_lease.go). A service it cannot route makes it not ready for that
// service only (/health/ready?service=NAME) and not ready overall. A
// hand-over restart hands every service's sockets to the service of the
// same name in the new process, and each VIP's lease with them
// (handover.go).
//
// A planned failover (failover.go) is run by the Raft leader: it commits
// a route with no master (writes paused), waits until every node's proxy
// follows it and writes to no master any more (NoteRouted reports the
// proxy's WritingTo: a session still connected to the old master, its
// commands in flight or its dial begun under the old route, holds it),
// reads the old master's replication offset, waits until the replicas
// have it, and only then, still leader, asks Sentinel to fail over; any
// step that fails or times out puts the old route back. Every write a
// proxy acknowledged was run by the old master before the offset was
// read, and none can reach it afterwards, so none is lost at the switch
// (issue 13: a session that dialed the old master as the pause came
// stayed on it and 32 of 128 acknowledged writes were lost at load 25;
// proxy TestDialAcrossWritePause, TestPlannedFailoverUnderTraffic).
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

	// services are the Redis master sets this node routes, in config
	// order (service.go); each has its watcher, proxy and route.
	services    []*service
	runWatchers func(context.Context) error // every service's watcher (newWatchers)
	cluster     *cluster.Agent
	// vips are the shared VIP (first) and the services' own (vips.go),
	// each with its manager and lease policy (vip_lease.go).
	vips []*vipSlot
	web  *webui.Server

	// vipAddressOff (tests only): the VIP managers are not run, so no
	// address is added anywhere; the lease policy runs as configured.
	vipAddressOff bool
	// observeHook (tests only), when set, rewrites what this node's
	// watchers observe before the policy loops use it.
	observeHook atomic.Pointer[func(service string, obs topology.Observation) topology.Observation]

	mu             sync.Mutex // guards the fields below and the services' policy state
	unhealthySince time.Time  // leader without a routable master (of some service) since
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
	n := &Node{cfg: cfg, logger: logger, started: time.Now()}
	var err error
	if n.services, n.runWatchers, err = newServices(cfg.ServiceConfigs(), logger, in); err != nil {
		return nil, err
	}
	if n.web, err = webui.New(cfg.HTTP, (*webSource)(n), (*webAdmin)(n), logger); err != nil {
		n.closeListeners()
		return nil, fmt.Errorf("http: %w", err)
	}
	ccfg := cfg.Cluster
	ccfg.NodeName, ccfg.DataDir, ccfg.Version = cfg.NodeName, cfg.DataDir, Version
	ccfg.HTTPAddr = n.web.Addr().String()
	ccfg.Services = n.ServiceNames()
	for _, s := range n.services {
		if s.cfg.VIP != nil && s.cfg.VIP.EffectiveMode() == vip.ModeNetlink {
			ccfg.VIPServices = append(ccfg.VIPServices, s.name) // it takes a leader's grant (vip_lease.go)
		}
	}
	if n.cluster, err = cluster.New(ccfg, logger); err != nil {
		n.closeListeners()
		return nil, fmt.Errorf("cluster: %w", err)
	}
	if n.vips, err = newVIPSlots(cfg, n.services, logger); err != nil {
		n.closeListeners()
		return nil, err
	}
	n.adoptVIP(in) // vip_lease.go: the previous process's VIP lease, before vip.Run
	n.setUpDrain() // drain.go
	return n, nil
}

// closeListeners frees what New bound when New fails half way.
func (n *Node) closeListeners() {
	if n.web != nil {
		_ = n.web.Close()
	}
	closeServices(n.services)
	if n.cluster != nil {
		_ = n.cluster.Close()
	}
}

// ProxyAddr is the first service's read-write listener's address.
func (n *Node) ProxyAddr() net.Addr { return n.services[0].proxy.Addr() }

// ReadonlyAddr is the first service's read-only listener's address, nil
// when off.
func (n *Node) ReadonlyAddr() net.Addr { return n.services[0].proxy.ReadonlyAddr() }

// ServiceAddr is the read-write listener's address of the service called
// name ("" names the only one).
func (n *Node) ServiceAddr(name string) (net.Addr, error) {
	s, err := n.service(name)
	if err != nil {
		return nil, err
	}
	return s.proxy.Addr(), nil
}

// HTTPAddr is the stats page / API address.
func (n *Node) HTTPAddr() net.Addr { return n.web.Addr() }

// Service is the name of the first service this node serves (the only
// one without `services:`): its state in the cluster is kept under it
// (cluster.State.Service). It is the Sentinel master name, so the state a
// single-service release wrote (the default service) stays this
// service's. ServiceNames lists them all.
func (n *Node) Service() string { return n.services[0].name }

// Cluster exposes the cluster agent (tests and the CLI's API use it).
func (n *Node) Cluster() *cluster.Agent { return n.cluster }

// errClusterStopped: the cluster agent returned without an error while the
// node was still meant to run.
var errClusterStopped = errors.New("cluster stopped")

// Run starts every part and blocks until ctx ends or a part fails. On the
// way out it first stops serving (the VIP is released by vip.Run, the
// proxy closes its sessions), then leaves the cluster.
func (n *Node) Run(ctx context.Context) error {
	for _, s := range n.services {
		n.logger.Info("service configured", "service", s.name, "proxy_listen", s.proxy.Addr().String(), "sentinels", s.cfg.Redis.Sentinels)
	}
	n.logger.Info("agent starting", "node", n.cfg.NodeName, "version", Version,
		"proxy_listen", n.ProxyAddr().String(), "http_listen", n.web.Addr().String(),
		"services", n.ServiceNames(), "vip", n.cfg.VIP.Address)
	for _, v := range n.vips[1:] {
		n.logger.Info("service vip configured", "service", v.key, "vip", v.cfg.Address, "interface", v.cfg.Interface)
	}

	// The cluster outlives the serving parts so that shutdown is ordered:
	// serving stops first, then the node leaves.
	clusterCtx, stopCluster := context.WithCancel(context.WithoutCancel(ctx))
	defer stopCluster()
	clusterDone := make(chan error, 1)
	go func() { clusterDone <- n.cluster.Run(clusterCtx) }()

	g, gctx := errgroup.WithContext(ctx)
	// Each part's stop is bounded (stop.go).
	g.Go(n.bounded(gctx, "watchers", n.runWatchers))
	for _, s := range n.services {
		g.Go(n.bounded(gctx, "proxy "+s.name, s.proxy.Run))
		g.Go(n.bounded(gctx, "policy loop "+s.name, func(ctx context.Context) error { return n.decide(ctx, s) }))
	}
	g.Go(n.bounded(gctx, "cluster change fan-out", n.fanOut))
	g.Go(n.bounded(gctx, "leader health loop", n.leaderHealthLoop))
	g.Go(n.bounded(gctx, "web", n.web.Run))
	// The VIP goes once the proxies closed their connections (drain.go).
	vctx, stopVIPs := n.vipStopContext(gctx)
	defer stopVIPs()
	for _, v := range n.vips {
		name := "vip"
		if v.key != cluster.SharedVIP {
			name = "vip of " + v.key
		}
		run := v.mgr.Run
		if n.vipAddressOff {
			run = func(ctx context.Context) error { <-ctx.Done(); return nil }
		}
		g.Go(n.bounded(vctx, name, run))
		g.Go(n.bounded(vctx, name+" lease loop", func(ctx context.Context) error { return n.leaseLoop(ctx, v) }))
	}
	g.Go(n.bounded(gctx, "redis TLS reload loop", n.redisTLSLoop))
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
	if cerr := n.waitCluster(clusterDone); cerr != nil && err == nil {
		err = fmt.Errorf("cluster: %w", cerr)
	}
	if ctx.Err() != nil && errors.Is(err, errClusterStopped) {
		err = nil // the cluster ended because we are shutting down
	}
	n.logger.Info("agent stopped")
	return err
}

// decide is one service's policy loop. Level-triggered: on every hint
// from its watcher or the cluster, and on a ticker, it re-reads the real
// state and
//   - as Raft leader, commits the watcher's confirmed master as the
//     service's route and runs its planned failovers;
//   - on every node, routes to the committed master only while the node is
//     in contact with the quorum and its own watcher does not contradict
//     that master (topology.Observation.Contradicts);
//   - tells the VIP lease (vip_lease.go) whether this node may hold the VIP.
//
// Each service has its own loop, so a slow commit or a failover of one
// never delays another's route.
func (n *Node) decide(ctx context.Context, s *service) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		n.step(ctx, s)
		select {
		case <-ctx.Done():
			return nil
		case <-s.watcher.Changes():
		case <-s.wake:
		case <-tick.C:
		}
	}
}

// step is one pass of a service's policy loop.
func (n *Node) step(ctx context.Context, s *service) {
	obs := s.watcher.Observation()
	if f := n.observeHook.Load(); f != nil {
		obs = (*f)(s.name, obs)
	}
	// Route before the leader commits: a commit can take a while (a slow
	// quorum), and meanwhile this proxy must already stop sending to a
	// master its watcher sees deposed (issue 13: the leader's proxy kept
	// a deposed master for 0.5 s while its commit of the new one waited).
	n.route(s, obs)
	if n.cluster.IsLeader() {
		n.leaderStep(ctx, s, obs)
		n.route(s, obs) // what was just committed
	}
}

// route sets the proxy's route from the committed state and this node's
// observation, and tells the VIP lease whether this node may serve.
func (n *Node) route(s *service, obs topology.Observation) {
	st := n.cluster.State()
	ss := st.Service(s.name)
	// Second safety net (DESIGN.md "Trust"): the committed master is
	// followed only while this node's own watcher does not contradict it.
	chk := checkRoute(obs, ss.Route)
	if n.noteRouteCheck(s, chk, ss.Route) {
		s.watcher.Recheck(ss.Route.Master) // a stale "replica" answer clears in one probe
	}
	r := proxy.Route{}
	if n.cluster.InContact() && ss.Route.Master != "" && chk.contradicted == "" {
		r.Master, r.Epoch = ss.Route.Master, ss.Route.Epoch
		r.Replicas = routeFromObservation(topology.Observation{Master: r.Master, Nodes: obs.Nodes}, s.maxReplicaLag.Load()).Replicas
		r.Replicas = withoutAdmin(r.Replicas, ss.Admin)
	}
	r = n.seeded(s, r, n.cluster.InContact(), chk.contradicted != "")
	r = withReplaced(r, chk, ss.Route.Master)
	if s.routes.set(r) {
		s.logger.Info("route changed", "master_addr", r.Master, "epoch", r.Epoch, "in_contact", n.cluster.InContact(),
			"reason", ss.Route.Reason, "contradicted", chk.contradicted, "replicas", r.Replicas)
	}
	// What a planned failover waits for before it reads the old master's
	// replication offset (failover.go): the proxy follows the pause and
	// no longer has a connection to the old master (its in-flight
	// commands answered), not only the route just set. Up is for the VIP
	// rule (vip_lease.go): this node reaches the routed master as a master.
	n.cluster.NoteRouted(s.name, ss.Route, s.proxy.WritingTo(), reachesAsMaster(obs, r.Master))
	vipContra := chk.contradicted
	if chk.staleBySentinel {
		vipContra = "" // shared by every node during a failover: keep the VIP where it is
	}
	s.mayServe.Store(n.mayHoldVIP(s, ss, vipContra))
	for _, v := range n.vips {
		v.lease.mayServe.Store(v.mayServe())
	}
}

// leaderStep commits the service's confirmed master, unless a planned
// failover is in charge of the route.
func (n *Node) leaderStep(ctx context.Context, s *service, obs topology.Observation) {
	st := n.cluster.State()
	ss := st.Service(s.name)
	if req, ok := ss.PendingFailover(); ok {
		n.runPlannedFailover(ctx, s, req)
		return
	}
	n.mu.Lock()
	if obs.Master == "" && ss.Route.Master != "" && s.masterLost.IsZero() {
		s.masterLost = time.Now()
	}
	n.mu.Unlock()
	if obs.Master == "" || obs.Master == ss.Route.Master {
		if obs.Master != "" {
			n.mu.Lock()
			s.masterLost = time.Time{}
			n.mu.Unlock()
		}
		return
	}
	epoch := obs.Epoch
	if len(s.cfg.Redis.Sentinels) == 0 && epoch <= ss.Route.Epoch {
		// Without Sentinel each watcher counts its own epochs; the
		// committed sequence must still only move forward.
		epoch = ss.Route.Epoch + 1
	}
	d := cluster.RouteDecision{Master: obs.Master, Epoch: epoch, Reason: obs.Reason}
	if ok, _ := d.Replaces(ss.Route); !ok {
		return // an older view than what is committed: never go back
	}
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := n.cluster.ProposeRoute(cctx, s.name, d); err != nil {
		s.logger.Warn("commit route failed", "master_addr", d.Master, "epoch", d.Epoch, "err", err)
		return
	}
	n.mu.Lock()
	lost := s.masterLost
	s.masterLost = time.Time{}
	n.mu.Unlock()
	if ss.Route.Master != "" {
		ev := cluster.Event{Time: time.Now(), Kind: cluster.EventFailover, Node: n.cfg.NodeName, Service: s.name,
			Message: fmt.Sprintf("master %s -> %s (epoch %d, %s)", ss.Route.Master, d.Master, d.Epoch, d.Reason)}
		if !lost.IsZero() {
			ev.Duration = time.Since(lost)
			n.mu.Lock()
			s.failovers.Observe(ev.Duration)
			n.mu.Unlock()
		}
		_ = n.cluster.RecordEvent(cctx, ev)
	}
}

// leaderHealthLoop runs checkLeaderHealth on a ticker.
func (n *Node) leaderHealthLoop(ctx context.Context) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			n.checkLeaderHealth(ctx)
		}
	}
}

// checkLeaderHealth hands leadership (and with it the VIP) to another
// node when this leader has been unable to route some service for a
// while although other voters exist: e.g. it lost every Sentinel and
// every Redis node of that service.
func (n *Node) checkLeaderHealth(ctx context.Context) {
	healthy := !n.cluster.IsLeader()
	planned := false
	if !healthy {
		healthy = true
		for _, s := range n.services {
			healthy = healthy && s.routes.Route().Master != "" && reachesSomething(s.watcher.Observation())
		}
	}
	n.mu.Lock()
	for _, s := range n.services {
		planned = planned || s.planned != nil
	}
	if healthy || planned {
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

// reachesAsMaster reports whether addr answered this node's last check
// and said it is a master.
func reachesAsMaster(obs topology.Observation, addr string) bool {
	for _, nd := range obs.Nodes {
		if nd.Addr == addr {
			return nd.Up && nd.Role == topology.RoleMaster
		}
	}
	return false
}

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
