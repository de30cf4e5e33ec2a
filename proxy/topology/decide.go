package topology

import (
	"fmt"
	"sort"
	"strings"
)

// This file holds the decision rule as a pure function, so that it can be
// tested without any Redis: which address is the master, given what the
// Sentinels report, what every node's ROLE says, an optional failover
// candidate named by Sentinel events, and the previous decision.

// decision is the rule's output. Owner and Epoch form the floor that later
// decisions may not go below: a claim with a lower epoch, or with the same
// epoch for another address, is refused. The floor only moves when a
// master is confirmed.
type decision struct {
	// Master is the confirmed master, or "".
	Master string
	// Epoch is the highest epoch at which a master was confirmed.
	Epoch int64
	// Owner is the master confirmed at Epoch ("" before the first one).
	// It stays set while Master is "" (e.g. the master died).
	Owner  string
	Reason string
}

// AboveFloor tells whether a claim that addr is the master at epoch may
// replace the floor (owner confirmed at ownerEpoch). It is the watcher's side
// of the one epoch rule, cluster.RouteDecision.Replaces; node's
// TestEpochRuleAgrees checks that both give the same answer on every case
// where both apply (this package may not import cluster):
//   - a higher epoch replaces;
//   - the owner itself is kept at any epoch (a Sentinel that has not seen
//     the newest epoch yet still names it; the floor's epoch stays);
//   - at the floor's epoch, only when there is no owner yet;
//   - another address at the same or a lower epoch is refused.
func AboveFloor(owner string, ownerEpoch int64, addr string, epoch int64) bool {
	return epoch > ownerEpoch || addr == owner || (owner == "" && epoch == ownerEpoch)
}

// candidate is a replica that a Sentinel is promoting right now, named by
// +selected-slave / +failover-state-send-slaveof-noone / +promoted-slave,
// with the epoch of that failover.
type candidate struct {
	Addr  string
	Epoch int64
}

type decideInput struct {
	// UseSentinel selects the Sentinel rule; false is the ROLE-only rule.
	UseSentinel bool
	Sentinels   []SentinelState
	Nodes       map[string]NodeState
	Candidate   candidate // Addr "" when no failover is being followed
	Prev        decision
}

// claim is one possible answer, before ROLE confirmation.
type claim struct {
	addr   string
	epoch  int64
	source string // "sentinels", "failover", "kept"
	why    string
}

// decide applies the rule. See decideSentinel and decideRoles.
func decide(in decideInput) decision {
	if in.UseSentinel {
		return decideSentinel(in)
	}
	return decideRoles(in)
}

// decideSentinel: the master is the address that a majority of the
// reachable Sentinels report at the highest config epoch, confirmed by the
// node's own ROLE. Two more claims fill the gaps Sentinel leaves:
//   - a failover candidate (named by the failover leader's events, with the
//     failover epoch) is reported the moment its ROLE says master, about a
//     second before +switch-master;
//   - the previous master is kept while ROLE still confirms it and no
//     reachable Sentinel reports another address at a higher epoch (this
//     covers the time Sentinels take to agree on a new epoch).
//
// The claim with the highest epoch wins (a Sentinel majority wins a tie);
// if it is not confirmed, there is no master: lower claims are not used,
// since a newer epoch exists. Claims below the floor (Prev.Epoch, unless
// for Prev.Owner) are refused, so a restarted old master that still says
// role:master is never chosen again.
func decideSentinel(in decideInput) decision {
	prev := in.Prev
	out := decision{Epoch: prev.Epoch, Owner: prev.Owner}

	var reachable []SentinelState
	for _, s := range in.Sentinels {
		if s.Reachable {
			reachable = append(reachable, s)
		}
	}

	if len(reachable) == 0 {
		// Without any Sentinel this watcher cannot tell whether a
		// failover happened elsewhere: hold rather than guess.
		out.Reason = "no sentinel reachable"
		return out
	}
	var claims []claim
	var noClaimWhy string
	{
		var emax int64 = -1
		for _, s := range reachable {
			if s.Master != "" && s.Epoch > emax {
				emax = s.Epoch
			}
		}
		votes := map[string]int{}
		for _, s := range reachable {
			if s.Master != "" && s.Epoch == emax {
				votes[s.Master]++
			}
		}
		switch {
		case emax < 0:
			noClaimWhy = "no reachable sentinel reports a master"
		case len(votes) == 1:
			for addr, n := range votes {
				if n > len(reachable)/2 {
					claims = append(claims, claim{addr: addr, epoch: emax, source: "sentinels",
						why: fmt.Sprintf("%d/%d sentinels at epoch %d", n, len(reachable), emax)})
				} else {
					noClaimWhy = fmt.Sprintf("no majority of %d reachable sentinels at epoch %d", len(reachable), emax)
				}
			}
		default:
			noClaimWhy = fmt.Sprintf("sentinels disagree at epoch %d", emax)
		}
	}

	if in.Candidate.Addr != "" {
		claims = append(claims, claim{addr: in.Candidate.Addr, epoch: in.Candidate.Epoch, source: "failover",
			why: fmt.Sprintf("failover at epoch %d", in.Candidate.Epoch)})
	}

	if prev.Owner != "" {
		newer := false
		for _, s := range reachable {
			if s.Master != "" && s.Master != prev.Owner && s.Epoch > prev.Epoch {
				newer = true
			}
		}
		if !newer {
			claims = append(claims, claim{addr: prev.Owner, epoch: prev.Epoch, source: "kept",
				why: fmt.Sprintf("kept at epoch %d", prev.Epoch)})
		}
	}

	// Refuse claims below the floor.
	var valid []claim
	var refused string
	for _, c := range claims {
		if AboveFloor(prev.Owner, prev.Epoch, c.addr, c.epoch) {
			valid = append(valid, c)
		} else if refused == "" {
			refused = fmt.Sprintf("%s reports %s at epoch %d, below current epoch %d (%s)",
				c.source, c.addr, c.epoch, prev.Epoch, prev.Owner)
		}
	}
	if len(valid) == 0 {
		switch {
		case refused != "" && noClaimWhy == "":
			out.Reason = refused
		case noClaimWhy != "":
			out.Reason = noClaimWhy
		default:
			out.Reason = "no master known"
		}
		return out
	}
	rank := map[string]int{"sentinels": 0, "failover": 1, "kept": 2}
	best := valid[0]
	for _, c := range valid[1:] {
		if c.epoch > best.epoch || (c.epoch == best.epoch && rank[c.source] < rank[best.source]) {
			best = c
		}
	}

	what := map[string]string{"sentinels": "sentinel master", "failover": "failover candidate", "kept": "master"}[best.source]
	if why := confirmFailure(in.Nodes, best.addr); why != "" {
		out.Reason = fmt.Sprintf("%s %s not confirmed: %s", what, best.addr, why)
		return out
	}
	out.Master = best.addr
	if best.epoch > out.Epoch {
		out.Epoch = best.epoch
	}
	out.Owner = best.addr
	out.Reason = fmt.Sprintf("%s, role confirmed", best.why)
	return out
}

// confirmFailure returns "" when the node's own ROLE says master, or why not.
func confirmFailure(nodes map[string]NodeState, addr string) string {
	n, ok := nodes[addr]
	switch {
	case !ok || (n.LastCheck.IsZero() && !n.Up):
		return "not checked yet"
	case !n.Up:
		if n.LastError != "" {
			return "down (" + errorClass(n.LastError) + ")"
		}
		return "down"
	case n.Role != RoleMaster:
		if n.Role == RoleUnknown {
			return "role unknown"
		}
		return "role " + string(n.Role)
	}
	return ""
}

// decideRoles is the rule without Sentinel: if exactly one reachable node
// says role:master it is the master; if several do, the one that the
// replicas (up, link up) follow wins, but only if the replicas follow just
// one of them. The epoch is a local counter that starts at 0 and goes up by
// one each time the master changes to another address; it is not shared
// with other watchers.
func decideRoles(in decideInput) decision {
	prev := in.Prev
	out := decision{Epoch: prev.Epoch, Owner: prev.Owner}
	var claimers []string
	for addr, n := range in.Nodes {
		if n.Up && n.Role == RoleMaster {
			claimers = append(claimers, addr)
		}
	}
	sort.Strings(claimers)
	var chosen string
	switch len(claimers) {
	case 0:
		out.Reason = "no node claims master"
		return out
	case 1:
		chosen = claimers[0]
		out.Reason = "only node with role master"
	default:
		followed := map[string]int{}
		for _, n := range in.Nodes {
			if n.Up && n.Role == RoleReplica && n.LinkUp && n.MasterAddr != "" {
				followed[n.MasterAddr]++
			}
		}
		var withFollowers []string
		for _, c := range claimers {
			if followed[c] > 0 {
				withFollowers = append(withFollowers, c)
			}
		}
		if len(withFollowers) != 1 {
			out.Reason = fmt.Sprintf("%d nodes claim master and replicas do not settle it", len(claimers))
			return out
		}
		chosen = withFollowers[0]
		out.Reason = fmt.Sprintf("%d nodes claim master, replicas follow %s", len(claimers), chosen)
	}
	out.Master = chosen
	if chosen != prev.Owner {
		out.Epoch = prev.Epoch + 1
		out.Owner = chosen
	}
	return out
}

// errorClass turns a check error into a few words for a Reason.
func errorClass(e string) string {
	switch {
	case strings.Contains(e, ErrAuth.Error()):
		return "auth failed"
	case strings.Contains(e, "connection refused"):
		return "connection refused"
	case strings.Contains(e, "timeout"):
		return "timeout"
	case strings.Contains(e, "EOF"), strings.Contains(e, "reset by peer"), strings.Contains(e, "broken pipe"):
		return "connection lost"
	}
	return shorten(e, 60)
}

func shorten(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
