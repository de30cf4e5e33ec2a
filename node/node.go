// Package node builds every part of a redhaven agent from its config,
// starts and stops them in order, and carries state between them. Policy
// (which master the proxies follow) lives here; mechanism in the leaves.
package node

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/redhaven/redhaven/proxy"
	"github.com/redhaven/redhaven/proxy/topology"
)

// Version is the agent's version, set by cmd from the build.
var Version = "dev"

// Node is one redhaven agent.
type Node struct {
	cfg     Config
	logger  *slog.Logger
	watcher *topology.Watcher
	proxy   *proxy.Server
	routes  *routeTable
}

// New validates cfg and builds every part. It binds the listeners (so
// Addr methods work) but starts nothing.
func New(cfg Config, logger *slog.Logger) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, logger: logger, routes: newRouteTable()}
	w, err := topology.New(cfg.Redis, logger.With("component", "watcher"))
	if err != nil {
		return nil, fmt.Errorf("watcher: %w", err)
	}
	n.watcher = w
	pcfg := cfg.Proxy
	pcfg.BackendUsername, pcfg.BackendPassword = cfg.Redis.Username, cfg.Redis.Password
	p, err := proxy.New(pcfg, n.routes, logger.With("component", "proxy"))
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	n.proxy = p
	return n, nil
}

// ProxyAddr is the read-write listener's address.
func (n *Node) ProxyAddr() net.Addr { return n.proxy.Addr() }

// ReadonlyAddr is the read-only listener's address, nil when off.
func (n *Node) ReadonlyAddr() net.Addr { return n.proxy.ReadonlyAddr() }

// Run starts every part and blocks until ctx ends or a part fails.
func (n *Node) Run(ctx context.Context) error {
	n.logger.Info("agent starting", "node", n.cfg.NodeName, "version", Version,
		"proxy_listen", n.proxy.Addr().String(), "sentinels", n.cfg.Redis.Sentinels)
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return n.watcher.Run(ctx) })
	g.Go(func() error { return n.proxy.Run(ctx) })
	g.Go(func() error { return n.decide(ctx) })
	err := g.Wait()
	n.logger.Info("agent stopped")
	return err
}

// decide turns the watcher's observations into the route the proxies
// follow. Level-triggered: it re-reads the observation on every hint and
// on a ticker.
func (n *Node) decide(ctx context.Context) error {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		obs := n.watcher.Observation()
		r := routeFromObservation(obs, n.cfg.Redis.MaxReplicaLag)
		if n.routes.set(r) {
			n.logger.Info("route changed", "master_addr", r.Master, "epoch", r.Epoch, "reason", obs.Reason, "replicas", r.Replicas)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-n.watcher.Changes():
		case <-tick.C:
		}
	}
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
