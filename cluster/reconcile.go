package cluster

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/raft"
)

// server is one gossip member that runs Raft (has valid metadata).
type server struct {
	name, raftAddr string
	boot           bool
}

// aliveServers lists the alive gossip members with Raft metadata whose
// Raft address answers with a certificate for their name (verifyClaim;
// this node is taken as is), sorted by name, and whether any of them
// already has a Raft configuration. A member whose claim does not hold is
// left out: it neither counts towards bootstrap_expect nor stops the
// bootstrap with a Boot flag it cannot back.
func (a *Agent) aliveServers() (servers []server, anyBoot bool) {
	a.mu.RLock()
	var cands []server
	for _, m := range a.members {
		if m.state != GossipAlive || !m.hasMeta || m.meta.Leaving {
			continue
		}
		cands = append(cands, server{name: m.name, raftAddr: m.meta.Raft, boot: m.meta.Boot})
	}
	a.mu.RUnlock()
	for _, c := range cands {
		if c.name != a.cfg.NodeName {
			if err := a.verifyClaim(c.name, c.raftAddr); err != nil {
				if ok, n := a.logLimit.allow("bootclaim/" + c.name); ok {
					a.log.Warn("member not counted for bootstrap: its raft address does not answer for its name",
						"member", c.name, "raft_addr", c.raftAddr, "claims_boot", c.boot, "error", oneLine(err), "suppressed_since_last", n)
				}
				continue
			}
		}
		servers = append(servers, c)
		anyBoot = anyBoot || (c.boot && c.name != a.cfg.NodeName)
	}
	slices.SortFunc(servers, func(x, y server) int { return strings.Compare(x.name, y.name) })
	return servers, anyBoot
}

// hasConfiguration reports whether this node's Raft knows any server.
func hasConfiguration(r *raft.Raft) bool {
	f := r.GetConfiguration()
	return f.Error() == nil && len(f.Configuration().Servers) > 0
}

// bootstrapLoop waits until gossip shows BootstrapExpect servers, then
// bootstraps the configuration made of exactly those servers (IDs = node
// names, sorted). Every node computes the same configuration, so the start
// order does not matter (Consul's bootstrap_expect). A node that sees a peer
// that already has a Raft configuration does not bootstrap: the leader adds it.
func (a *Agent) bootstrapLoop(ctx context.Context) {
	r := a.raftNode()
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	logged := -1
	for {
		if hasConfiguration(r) {
			return
		}
		servers, anyBoot := a.aliveServers()
		switch {
		case anyBoot:
			a.log.Info("cluster already bootstrapped, waiting for the leader to add this node")
			return
		case len(servers) >= a.cfg.BootstrapExpect:
			conf := raft.Configuration{}
			names := make([]string, 0, len(servers))
			for _, s := range servers {
				conf.Servers = append(conf.Servers, raft.Server{
					Suffrage: raft.Voter, ID: raft.ServerID(s.name), Address: raft.ServerAddress(s.raftAddr)})
				names = append(names, s.name)
			}
			if err := r.BootstrapCluster(conf).Error(); err != nil {
				a.log.Warn("raft bootstrap skipped", "error", err)
			} else {
				a.log.Info("raft bootstrapped", "servers", names)
			}
			a.setMeta(func(m *nodeMeta) { m.Boot = true })
			return
		default:
			if len(servers) != logged {
				logged = len(servers)
				a.log.Info("waiting for servers before bootstrap", "seen", len(servers), "bootstrap_expect", a.cfg.BootstrapExpect)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-a.bootHint:
		}
	}
}

// reconcileInterval is how often the leader reconciles without a hint.
const reconcileInterval = time.Second

// reconcileLoop runs on every node: it publishes Boot in the gossip
// metadata once this node has a configuration and, on the leader, records
// leader changes and reconciles gossip membership into the Raft
// configuration, on every membership hint and every second.
func (a *Agent) reconcileLoop(ctx context.Context) {
	r := a.raftNode()
	t := time.NewTicker(reconcileInterval)
	defer t.Stop()
	var recordedTerm uint64
	savedPeers := a.loadPeers()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-a.reconHint:
		}
		a.refreshRaftNames(r)
		a.mu.RLock()
		boot := a.meta.Boot
		a.mu.RUnlock()
		if !boot && hasConfiguration(r) {
			a.setMeta(func(m *nodeMeta) { m.Boot = true })
		}
		if peers := a.alivePeers(); len(peers) > 0 && !slices.Equal(peers, savedPeers) && !a.leaving.Load() {
			if err := a.savePeers(peers); err != nil {
				a.log.Warn("save gossip peers", "error", err)
			} else {
				savedPeers = peers
			}
		}
		if r.State() != raft.Leader {
			continue
		}
		if term := r.CurrentTerm(); term != recordedTerm {
			err := a.RecordEvent(ctx, Event{Kind: EventLeaderChange,
				Message: fmt.Sprintf("%s became leader (term %d)", a.cfg.NodeName, term)})
			if err == nil {
				recordedTerm = term
			}
		}
		a.reconcile(ctx, r)
	}
}

// reconcile applies the gossip view to the Raft configuration (leader only):
// alive member not a voter -> AddVoter (also updates a changed address);
// member that left or is leaving -> RemoveServer; member failed longer than
// DeadServerCleanup -> RemoveServer if the remaining voters keep a safe
// quorum.
func (a *Agent) reconcile(ctx context.Context, r *raft.Raft) {
	f := r.GetConfiguration()
	if err := f.Error(); err != nil {
		return
	}
	inCfg := map[raft.ServerID]raft.Server{}
	voters := 0
	for _, s := range f.Configuration().Servers {
		inCfg[s.ID] = s
		if s.Suffrage == raft.Voter {
			voters++
		}
	}
	a.mu.RLock()
	members := make([]memberState, 0, len(a.members))
	aliveVoters := 0
	for _, m := range a.members {
		members = append(members, *m)
		if s, ok := inCfg[raft.ServerID(m.name)]; ok && s.Suffrage == raft.Voter && m.state == GossipAlive {
			aliveVoters++
		}
	}
	a.mu.RUnlock()
	slices.SortFunc(members, func(x, y memberState) int { return strings.Compare(x.name, y.name) })

	addrOwner := map[string]raft.ServerID{}
	for id, s := range inCfg {
		addrOwner[string(s.Address)] = id
	}
	const timeout = 5 * time.Second
	for _, m := range members {
		if !m.hasMeta || m.name == a.cfg.NodeName {
			continue
		}
		id := raft.ServerID(m.name)
		s, ok := inCfg[id]
		switch {
		case m.state == GossipAlive && !m.meta.Leaving:
			if ok && s.Suffrage == raft.Voter && s.Address == raft.ServerAddress(m.meta.Raft) {
				continue
			}
			if why := a.refuseVoter(m, s, ok, addrOwner); why != "" {
				if ok, n := a.logLimit.allow("voter/" + m.name + "/" + why); ok {
					a.log.Warn("raft voter claim refused", "member", m.name, "raft_addr", m.meta.Raft,
						"reason", why, "suppressed_since_last", n)
				}
				continue
			}
			if err := r.AddVoter(id, raft.ServerAddress(m.meta.Raft), 0, timeout).Error(); err != nil {
				a.log.Warn("add raft voter failed", "member", m.name, "raft_addr", m.meta.Raft, "error", err)
				continue
			}
			a.log.Info("raft voter added", "member", m.name, "raft_addr", m.meta.Raft)
			a.recordEvent(ctx, EventMemberJoin, fmt.Sprintf("%s joined as voter (%s)", m.name, m.meta.Raft))
		case m.state == GossipLeft || m.meta.Leaving:
			if !ok {
				continue
			}
			// Only the voter itself may announce its leave: at its own
			// Raft address, proven while it was alive.
			why := ""
			switch {
			case s.Address != raft.ServerAddress(m.meta.Raft):
				why = "leave announced for another raft address than the voter's"
			case m.state == GossipAlive:
				if err := a.verifyClaim(m.name, m.meta.Raft); err != nil {
					why = "leaving member's raft address does not answer for its name: " + oneLine(err)
				}
			case m.verifiedAddr != m.meta.Raft:
				why = "left without a verified leave; remove it with `redhaven members remove " + m.name + "` if it is gone"
			}
			if why != "" {
				if ok, n := a.logLimit.allow("leave/" + m.name); ok {
					a.log.Warn("raft server kept: leave claim refused", "member", m.name, "reason", why, "suppressed_since_last", n)
				}
				continue
			}
			if err := r.RemoveServer(id, 0, timeout).Error(); err != nil {
				a.log.Warn("remove raft server failed", "member", m.name, "error", err)
				continue
			}
			a.log.Info("raft server removed", "member", m.name, "reason", "left")
			a.recordEvent(ctx, EventMemberLeave, fmt.Sprintf("%s left", m.name))
		case m.state == GossipDead:
			if !ok || a.cfg.DeadServerCleanup <= 0 || time.Since(m.since) < a.cfg.DeadServerCleanup {
				continue
			}
			remaining := voters
			if s.Suffrage == raft.Voter {
				remaining--
			}
			// Safe: the remaining voters are a majority of the current
			// ones, and the alive ones still form a quorum afterwards.
			if remaining*2 <= voters || aliveVoters < remaining/2+1 {
				a.log.Warn("failed server kept: removing it would endanger quorum", "member", m.name,
					"voters", voters, "alive_voters", aliveVoters)
				continue
			}
			if err := r.RemoveServer(id, 0, timeout).Error(); err != nil {
				a.log.Warn("remove raft server failed", "member", m.name, "error", err)
				continue
			}
			voters = remaining
			a.log.Info("raft server removed", "member", m.name, "reason", "failed", "failed_for", time.Since(m.since).Round(time.Millisecond))
			a.recordEvent(ctx, EventMemberLeave, fmt.Sprintf("%s removed after failing for %s", m.name, time.Since(m.since).Round(time.Second)))
		}
	}
}

// refuseVoter says why an alive member may not become a voter at the Raft
// address it claims ("" = it may): the address belongs to another server
// of the configuration; it is a voter at another address that still
// answers for its name (someone else takes its name); or its claimed
// address does not answer with a certificate for its name.
func (a *Agent) refuseVoter(m memberState, cur raft.Server, inCfg bool, addrOwner map[string]raft.ServerID) string {
	if owner, ok := addrOwner[m.meta.Raft]; ok && owner != raft.ServerID(m.name) {
		return "raft address of server " + string(owner)
	}
	if inCfg && cur.Address != raft.ServerAddress(m.meta.Raft) {
		if err := a.stream.probe(string(cur.Address), m.name, probeTimeout); err == nil {
			return "voter " + m.name + " still answers at its raft address " + string(cur.Address)
		}
	}
	if err := a.verifyClaim(m.name, m.meta.Raft); err != nil {
		return "raft address does not answer with a certificate for the member's name: " + oneLine(err)
	}
	return ""
}

func (a *Agent) recordEvent(ctx context.Context, kind, msg string) {
	if err := a.RecordEvent(ctx, Event{Kind: kind, Message: msg}); err != nil {
		a.log.Warn("record event failed", "kind", kind, "error", err)
	}
}
