package node

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redhaven/redhaven/cluster"
	"github.com/redhaven/redhaven/proxy"
	"github.com/redhaven/redhaven/proxy/topology"
	"github.com/redhaven/redhaven/webui"
)

// A service is one Sentinel-monitored master set the agent routes (an
// entry of `services:`, or the shorthand keys): its own watcher, proxy
// listeners, route table and policy loop. Its state in the cluster is
// kept under its name. Services share the node and the cluster, and
// the shared VIP unless they have their own.
//
// The VIP rules with several services (vips.go): a node may hold or
// claim a service's own VIP only while it may serve that service, and
// the shared VIP only while it may serve EVERY service that shares it. A
// service this node cannot route makes it not ready for that service
// (/health/ready?service=NAME) and not ready overall (/health/ready),
// and moves the VIP that carries the service (its own, or the shared
// one) to a node that routes what that VIP carries.
type service struct {
	// name is the service's key in the cluster state (Sentinel's master
	// name; cluster.DefaultServiceName when none is set).
	name    string
	cfg     ServiceConfig
	logger  *slog.Logger
	watcher *topology.Watcher
	proxy   *proxy.Server
	// redisTLS is redis.tls's files (nil when off), used by the watcher
	// and the proxy, read again by Node.ReloadTLS.
	redisTLS *topology.ClientTLS
	routes   *routeTable
	// wake carries the cluster's change hints to this service's loop
	// (the cluster has one hint channel; fanOut copies it to each).
	wake chan struct{}
	// maxReplicaLag is the service's max_replica_lag, changed by a reload.
	maxReplicaLag atomic.Int64
	// mayServe: this service's step would let the node hold a VIP
	// (mayHoldVIP); each VIP's lease needs it of every service it
	// carries (vipSlot.mayServe).
	mayServe atomic.Bool

	// Guarded by Node.mu.
	masterLost time.Time             // when the leader's watcher lost the committed master; zero when it has one
	failovers  webui.FailoverStats   // durations of failovers this node committed as leader
	planned    *plannedFailover      // the planned failover this leader is running, if any
	rates      map[string]rateSample // last commands counter per listener, for commands/s
	trust      routeTrust            // last check of the committed route against the local observation
	seed       *seedRoute            // the route handed over by the previous process (handover.go)
}

// newWatchers builds one topology watcher per service, in the order of
// cfgs, and run, which runs them all until ctx ends. The watchers are one
// topology.Group: services monitored by the same Sentinels share one
// command link and one subscription per Sentinel, and a Redis node known
// to several services gets one ROLE probe (proxy/topology/DESIGN.md).
func newWatchers(cfgs []ServiceConfig, logger *slog.Logger) (ws []*topology.Watcher, run func(context.Context) error, err error) {
	tcfgs := make([]topology.Config, len(cfgs))
	for i, c := range cfgs {
		tcfgs[i] = c.Redis
	}
	group, err := topology.NewGroup(tcfgs, logger)
	if err != nil {
		return nil, nil, fmt.Errorf("watchers: %w", err)
	}
	for _, c := range cfgs {
		ws = append(ws, group.Service(c.Redis.MasterName))
	}
	return ws, group.Run, nil
}

// serviceLogger tags a service's log lines with its name when there are
// several (one service logs as before).
func serviceLogger(logger *slog.Logger, c ServiceConfig, count int) *slog.Logger {
	if count > 1 {
		return logger.With("service", c.Name)
	}
	return logger
}

// newServices builds every service's parts (watcher, proxy listeners,
// route table) and the function that runs the watchers (newWatchers). in,
// the previous process's hand-over, gives each service its own part
// (Inherited.match); the parts of services no longer configured are
// closed first, so that their ports are free for the services that are.
func newServices(cfgs []ServiceConfig, logger *slog.Logger, in *Inherited) ([]*service, func(context.Context) error, error) {
	names := make([]string, len(cfgs))
	for i, c := range cfgs {
		names[i] = cmp.Or(c.Name, cluster.DefaultServiceName)
	}
	mine, removed := in.match(names)
	for _, is := range removed {
		l, ss := 0, 0
		if is.Proxy != nil {
			l, ss = len(is.Proxy.Listeners), len(is.Proxy.Sessions)
		}
		logger.Warn("hand-over: service no longer configured; its listeners and client connections are closed",
			"service", is.Name, "listeners", l, "sessions", ss)
		is.Proxy.Close()
	}
	closeRest := func(from int) {
		for _, is := range mine[from:] {
			is.proxyHandoff().Close()
		}
	}
	// One redis.tls per service, shared by its watcher and its proxy, so
	// that a reload (Node.ReloadTLS) reaches both.
	redisTLS := make([]*topology.ClientTLS, len(cfgs))
	for i := range cfgs {
		var err error
		if redisTLS[i], err = cfgs[i].Redis.TLS.NewClientTLS(); err != nil {
			closeRest(0)
			return nil, nil, err
		}
		cfgs[i].Redis.ClientTLS = redisTLS[i]
	}
	watchers, run, err := newWatchers(cfgs, logger)
	if err != nil {
		closeRest(0)
		return nil, nil, err
	}
	var out []*service
	for i, c := range cfgs {
		s := &service{name: names[i], cfg: c, logger: serviceLogger(logger, c, len(cfgs)),
			watcher: watchers[i], redisTLS: redisTLS[i], routes: newRouteTable(), wake: make(chan struct{}, 1), rates: map[string]rateSample{}}
		s.maxReplicaLag.Store(c.Redis.MaxReplicaLag)
		pcfg := c.Proxy
		if s.redisTLS != nil {
			pcfg.BackendTLS = s.redisTLS.For
		}
		if s.seed = mine[i].seed(); s.seed != nil {
			s.routes.set(s.seed.route)
		}
		if s.proxy, err = proxy.NewFromHandoff(pcfg, s.routes, s.logger, mine[i].proxyHandoff()); err != nil {
			closeServices(out)
			closeRest(i + 1)
			if len(cfgs) > 1 {
				return nil, nil, fmt.Errorf("proxy of service %q: %w", c.Name, err)
			}
			return nil, nil, fmt.Errorf("proxy: %w", err)
		}
		if in != nil && mine[i] == nil {
			s.logger.Info("hand-over: service new in the config; it starts with no client connections")
		}
		out = append(out, s)
	}
	return out, run, nil
}

func closeServices(ss []*service) {
	for _, s := range ss {
		if s.proxy != nil {
			_ = s.proxy.Close()
		}
	}
}

// service returns the service called name ("" names the only one).
func (n *Node) service(name string) (*service, error) {
	if name == "" && len(n.services) == 1 {
		return n.services[0], nil
	}
	for _, s := range n.services {
		if s.cfg.Name == name || s.name == name {
			return s, nil
		}
	}
	if name == "" {
		return nil, webui.Classify(webui.ErrBadRequest, fmt.Errorf("service: give one of %s", quoted(n.ServiceNames())))
	}
	return nil, webui.Classify(webui.ErrNotFound, fmt.Errorf("service %q: not configured on %s (services: %s)", name, n.cfg.NodeName, quoted(n.ServiceNames())))
}

// quoted is names as "a", "b".
func quoted(names []string) string {
	q := make([]string, len(names))
	for i, s := range names {
		q[i] = strconv.Quote(s)
	}
	return strings.Join(q, ", ")
}

// ServiceNames lists the services this node serves, in config order.
func (n *Node) ServiceNames() []string {
	out := make([]string, len(n.services))
	for i, s := range n.services {
		out[i] = s.name
	}
	return out
}

// fanOut copies the cluster's change hints to every service's loop.
func (n *Node) fanOut(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-n.cluster.Changes():
			for _, s := range n.services {
				select {
				case s.wake <- struct{}{}:
				default:
				}
			}
		}
	}
}
