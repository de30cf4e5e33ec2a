package topology

import (
	"context"
	"fmt"
	"log/slog"
)

// Group watches several services (Sentinel master names) at once. Each
// service has a Watcher of its own, with its own decision, but they share
// connections: one command link and one subscription per Sentinel carry
// every master's polls and events, and one ROLE probe per Redis node
// serves every service that knows the node. Services with other Sentinel
// sets, credentials or TLS settings get connections of their own.
type Group struct {
	hub      *hub
	services map[string]*Watcher
	names    []string
}

// NewGroup validates every configuration and builds a watcher per
// service, keyed by MasterName (which must be unique). It starts nothing;
// see Run.
func NewGroup(cfgs []Config, logger *slog.Logger) (*Group, error) {
	if len(cfgs) == 0 {
		return nil, fmt.Errorf("topology group: no service")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	g := &Group{hub: newHub(), services: map[string]*Watcher{}}
	for i, cfg := range cfgs {
		if _, dup := g.services[cfg.MasterName]; dup {
			return nil, fmt.Errorf("topology group: service %d: master name %q twice", i, cfg.MasterName)
		}
		w, err := newWatcher(cfg, logger.With("service", cfg.MasterName), g.hub)
		if err != nil {
			return nil, fmt.Errorf("service %q: %w", cfg.MasterName, err)
		}
		g.services[cfg.MasterName] = w
		g.names = append(g.names, cfg.MasterName)
	}
	return g, nil
}

// Run starts every service's checks and blocks until ctx ends; it then
// closes every connection and waits for its goroutines. It returns nil
// after ctx ends.
func (g *Group) Run(ctx context.Context) error { return g.hub.run(ctx) }

// Service returns the watcher of a master name, nil if the group has no
// such service. Use it as a lone Watcher (Observation, Changes, Recheck,
// Failover, ...), except Run: the group runs it.
func (g *Group) Service(name string) *Watcher { return g.services[name] }

// Services returns the master names in configuration order.
func (g *Group) Services() []string { return append([]string(nil), g.names...) }
