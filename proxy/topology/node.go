package topology

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"time"
)

// nodeProbe is one watcher's view of a Redis node; the hub checks its
// ROLE over a persistent connection.
type nodeProbe struct {
	link *link // shared in a Group

	// guarded by Watcher.mu
	state     NodeState
	failures  int       // consecutive failed checks
	fastUntil time.Time // poll every fastProbeEvery until then (failover candidate)
	faults    faultLog
}

// roleInfo is a parsed ROLE reply.
type roleInfo struct {
	role       Role
	masterAddr string
	linkUp     bool
	offset     int64
	replicas   []string // a master's connected replicas
}

// parseRole reads a ROLE reply:
//
//	master:  ["master", offset, [[ip, port, offset], ...]]
//	replica: ["slave", master_ip, master_port, state, offset]
func parseRole(v any) (roleInfo, error) {
	arr, ok := v.([]any)
	if !ok || len(arr) == 0 {
		return roleInfo{}, fmt.Errorf("unexpected ROLE reply %v", v)
	}
	switch asString(arr[0]) {
	case "master":
		ri := roleInfo{role: RoleMaster, linkUp: true}
		if len(arr) > 1 {
			ri.offset, _ = asInt(arr[1])
		}
		if len(arr) > 2 {
			reps, _ := arr[2].([]any)
			for _, r := range reps {
				fields, _ := r.([]any)
				if len(fields) >= 2 {
					if a := joinHostPort(asString(fields[0]), fields[1]); a != "" {
						ri.replicas = append(ri.replicas, a)
					}
				}
			}
		}
		return ri, nil
	case "slave", "replica":
		if len(arr) < 5 {
			return roleInfo{}, fmt.Errorf("short ROLE reply %v", v)
		}
		ri := roleInfo{role: RoleReplica, masterAddr: joinHostPort(asString(arr[1]), arr[2])}
		ri.linkUp = asString(arr[3]) == "connected"
		ri.offset, _ = asInt(arr[4])
		return ri, nil
	case "sentinel":
		return roleInfo{}, errors.New("address is a sentinel, not a redis node")
	}
	return roleInfo{}, fmt.Errorf("unknown role %q", asString(arr[0]))
}

// recordNode stores a check result and returns how long to wait before
// the next check.
func (w *Watcher) recordNode(n *nodeProbe, ri roleInfo, err error, start time.Time, dur time.Duration) time.Duration {
	now := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	st := &n.state
	prevUp, prevRole := st.Up, st.Role
	if !prevUp && !st.LastCheck.IsZero() && now.After(st.LastCheck) {
		st.Downtime += now.Sub(st.LastCheck) // down since the previous check
	}
	st.LastCheck = now
	st.CheckDuration = dur
	fast := now.Before(n.fastUntil)
	switch {
	case err != nil && w.stalled(err):
		// Slow, not gone: keep the last answer (see NodeState.Stalled).
		n.failures++
		if isBusy(err) {
			st.Up = true // it answered
		}
		st.Stalled = true
		st.LastError = err.Error()
		if n.faults.should(err, now) {
			w.log.Warn("node busy or slow", "addr", n.link.addr, "up", st.Up, "role", st.Role, "error", err)
		}
	case err != nil:
		n.failures++
		st.Up = false
		st.Stalled = false
		st.Role = RoleUnknown
		st.MasterAddr = ""
		st.LinkUp = false
		st.LastError = err.Error()
		if n.faults.should(err, now) {
			if errors.Is(err, ErrAuth) {
				w.log.Warn("auth failed", "addr", n.link.addr, "kind", "redis", "error", err)
			} else {
				w.log.Warn("node check failed", "addr", n.link.addr, "error", err)
			}
		}
	default:
		if n.failures > 0 || prevRole != ri.role {
			n.faults.reset()
		}
		n.failures = 0
		st.Up = true
		st.Stalled = false
		st.Role = ri.role
		st.MasterAddr = ri.masterAddr
		st.LinkUp = ri.linkUp
		st.Offset = ri.offset
		st.LastError = ""
		for _, r := range ri.replicas {
			w.addNodeLocked(r)
		}
		if ri.role == RoleMaster {
			n.fastUntil = time.Time{}
			fast = false
		}
		w.log.Debug("node checked", "addr", n.link.addr, "role", ri.role, "offset", ri.offset, "took", dur)
	}
	if st.Up != prevUp || st.Role != prevRole || st.LastChange.IsZero() {
		st.LastChange = now
		if st.Up != prevUp || st.Role != prevRole {
			w.log.Info("node state changed", "addr", n.link.addr, "up", st.Up, "role", st.Role, "master_addr", st.MasterAddr)
		}
	}
	w.updateLocked()

	switch {
	case fast && err == nil:
		return fastProbeEvery
	case fast:
		return min(backoff(n.failures, 50*time.Millisecond), w.cfg.CheckInterval)
	case err != nil:
		return min(backoff(n.failures, w.cfg.CheckInterval), w.cfg.CheckInterval)
	}
	return w.cfg.CheckInterval
}

// stalled reports whether a failed check means the node is slow rather
// than gone: it answered BUSY (a script or function is running; ROLE is
// not allowed then), or, with Sentinel, a read timed out on a connection
// that was open (a script shorter than busy-reply-threshold, a stopped
// process). Sentinel decides whether such a master is down. Without
// Sentinel nobody else would, so a timeout there is a failed check.
// Refused or lost connections and dial timeouts are failures: a killed
// master must be noticed at once.
func (w *Watcher) stalled(err error) bool {
	if isBusy(err) {
		return true
	}
	if len(w.sentinels) == 0 {
		return false
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "dial" {
		return false
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// isBusy reports whether err is Redis's BUSY reply.
func isBusy(err error) bool {
	var re redisError
	return errors.As(err, &re) && strings.HasPrefix(string(re), "BUSY")
}

// followCandidateLocked starts polling addr fast: a Sentinel is promoting it.
func (w *Watcher) followCandidateLocked(addr string, epoch int64, source string) {
	now := time.Now()
	if w.cand.Addr != addr || w.cand.Epoch != epoch {
		w.log.Info("following failover", "candidate", addr, "epoch", epoch, "sentinel", source)
	}
	w.cand = candidate{Addr: addr, Epoch: epoch}
	w.candUntil = now.Add(fastProbeFor)
	n := w.addNodeLocked(addr)
	n.fastUntil = now.Add(fastProbeFor)
	n.link.kick()
	w.updateLocked()
}
