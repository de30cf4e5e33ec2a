package topology

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// sentinelChannels are the Sentinel events followed on pub/sub.
var sentinelChannels = []string{
	"+switch-master", "+sdown", "-sdown", "+odown", "-odown", "+failover-end",
	"+new-epoch", "+try-failover", "+selected-slave", "+failover-state-send-slaveof-noone",
	"+promoted-slave", "+convert-to-slave", "+reboot", "+slave",
	"-failover-abort-not-elected", "-failover-abort-no-good-slave", "-failover-abort-slave-timeout",
}

// sentinelWatch is one Sentinel: a polled command link and a subscriber.
type sentinelWatch struct {
	link *link // command connection (SENTINEL MASTER / REPLICAS), shared in a Group

	// guarded by Watcher.mu
	state         SentinelState
	newEpoch      int64 // from the last +new-epoch
	failoverEpoch int64 // epoch of this Sentinel's own running failover (+try-failover)
	failures      int   // consecutive failed polls
	pollFaults    faultLog
	subFaults     faultLog
}

// sentinelReport is one poll's result.
type sentinelReport struct {
	master   string
	epoch    int64
	replicas []string
}

func (w *Watcher) sentinelTimeout() time.Duration {
	return min(max(w.cfg.CheckInterval, 250*time.Millisecond), time.Second)
}

func (w *Watcher) pollSentinel(ctx context.Context, s *sentinelWatch) (sentinelReport, error) {
	var rep sentinelReport
	to := w.sentinelTimeout()
	v, err := s.link.do(ctx, to, "SENTINEL", "MASTER", w.cfg.MasterName)
	if err != nil {
		return rep, fmt.Errorf("sentinel master %s: %w", w.cfg.MasterName, err)
	}
	m := flatMap(v)
	rep.master = joinHostPort(m["ip"], m["port"])
	rep.epoch, _ = strconv.ParseInt(m["config-epoch"], 10, 64)
	if rep.master == "" {
		return rep, fmt.Errorf("sentinel master %s: reply without ip/port", w.cfg.MasterName)
	}
	v, err = s.link.do(ctx, to, "SENTINEL", "REPLICAS", w.cfg.MasterName)
	var re redisError
	if errors.As(err, &re) && strings.Contains(strings.ToLower(string(re)), "unknown") {
		v, err = s.link.do(ctx, to, "SENTINEL", "SLAVES", w.cfg.MasterName) // before Redis 5
	}
	if err != nil {
		return rep, fmt.Errorf("sentinel replicas %s: %w", w.cfg.MasterName, err)
	}
	list, _ := v.([]any)
	for _, r := range list {
		f := flatMap(r)
		if a := joinHostPort(f["ip"], f["port"]); a != "" {
			rep.replicas = append(rep.replicas, a)
		}
	}
	return rep, nil
}

func (w *Watcher) recordSentinel(s *sentinelWatch, rep sentinelReport, err error) time.Duration {
	now := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	st := &s.state
	if err != nil {
		s.failures++
		var re redisError
		// A Sentinel that answers with an error (e.g. it does not know
		// the master name) is reachable but reports no master.
		st.Reachable = errors.As(err, &re)
		st.Master, st.Epoch = "", 0
		st.LastError = err.Error()
		if s.pollFaults.should(err, now) {
			if errors.Is(err, ErrAuth) {
				w.log.Warn("auth failed", "addr", st.Addr, "kind", "sentinel", "error", err)
			} else {
				w.log.Warn("sentinel poll failed", "addr", st.Addr, "error", err)
			}
		}
		w.updateLocked()
		return min(backoff(s.failures, w.cfg.CheckInterval), w.cfg.CheckInterval)
	}
	if s.failures > 0 {
		s.pollFaults.reset()
	}
	s.failures = 0
	if !st.Reachable || st.Master != rep.master || st.Epoch != rep.epoch {
		w.log.Info("sentinel reports", "addr", st.Addr, "master_addr", rep.master, "epoch", rep.epoch)
	}
	st.Reachable = true
	st.Master, st.Epoch = rep.master, rep.epoch
	st.LastError = ""
	w.addNodeLocked(rep.master)
	for _, r := range rep.replicas {
		w.addNodeLocked(r)
	}
	w.log.Debug("sentinel polled", "addr", st.Addr, "master_addr", rep.master, "epoch", rep.epoch, "replicas", len(rep.replicas))
	w.updateLocked()
	return w.cfg.CheckInterval
}

// subscriptionLost records a failed or lost subscription to s.
func (w *Watcher) subscriptionLost(s *sentinelWatch, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	s.state.LastError = "subscribe: " + err.Error()
	if s.subFaults.should(err, time.Now()) {
		if errors.Is(err, ErrAuth) {
			w.log.Warn("auth failed", "addr", s.state.Addr, "kind", "sentinel", "error", err)
		} else {
			w.log.Warn("sentinel subscription lost", "addr", s.state.Addr, "error", err)
		}
	}
}

// subscribed records that the subscription to s is (again) in place.
func (w *Watcher) subscribed(s *sentinelWatch) {
	w.mu.Lock()
	if strings.HasPrefix(s.state.LastError, "subscribe: ") {
		s.state.LastError = ""
	}
	s.subFaults.reset()
	w.mu.Unlock()
	w.log.Debug("subscribed to sentinel events", "addr", s.state.Addr)
}

// instance is a parsed "%@" event payload:
// "<type> <name> <ip> <port> @ <master-name> <master-ip> <master-port>"
// (the part from "@" on is absent for masters).
type instance struct {
	kind       string
	addr       string
	masterName string
}

func parseInstance(payload string) (instance, bool) {
	f := strings.Fields(payload)
	if len(f) < 4 {
		return instance{}, false
	}
	in := instance{kind: f[0], addr: joinHostPort(f[2], f[3])}
	if in.addr == "" {
		return instance{}, false
	}
	if len(f) >= 6 && f[4] == "@" {
		in.masterName = f[5]
	} else if in.kind == "master" {
		in.masterName = f[1]
	}
	return in, true
}

// handleEvent reacts to one Sentinel event. Events are hints to look now
// (kick a probe or a poll); only the failover events carry state: the
// candidate being promoted and the failover epoch.
func (w *Watcher) handleEvent(s *sentinelWatch, channel, payload string) {
	now := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	s.state.LastEvent = strings.TrimSpace(channel + " " + payload)
	s.state.LastEventTime = now
	w.log.Debug("sentinel event", "addr", s.state.Addr, "event", channel, "payload", payload)

	switch channel {
	case "+new-epoch":
		if e, err := strconv.ParseInt(strings.TrimSpace(payload), 10, 64); err == nil {
			s.newEpoch = e
			s.state.NewEpoch = max(s.state.NewEpoch, e)
		}
		return
	case "+switch-master":
		f := strings.Fields(payload)
		if len(f) == 5 && f[0] == w.cfg.MasterName {
			s.failoverEpoch = 0
			if a := joinHostPort(f[3], f[4]); a != "" {
				w.addNodeLocked(a)
				w.kickNodeLocked(a)
			}
			// The poll reads the new config epoch.
			for _, sw := range w.sentinels {
				sw.link.kick()
			}
		}
		return
	}

	in, ok := parseInstance(payload)
	if !ok || in.masterName != w.cfg.MasterName {
		return
	}
	switch channel {
	case "+try-failover":
		s.failoverEpoch = s.newEpoch
	case "+selected-slave", "+failover-state-send-slaveof-noone", "+promoted-slave":
		epoch := s.failoverEpoch
		if epoch == 0 {
			epoch = s.newEpoch
		}
		w.followCandidateLocked(in.addr, epoch, s.state.Addr)
	case "-failover-abort-not-elected", "-failover-abort-no-good-slave", "-failover-abort-slave-timeout", "+failover-end":
		if s.failoverEpoch != 0 && w.cand.Epoch == s.failoverEpoch && channel != "+failover-end" {
			w.log.Info("failover aborted", "sentinel", s.state.Addr, "event", channel)
			w.cand = candidate{}
			w.updateLocked()
		}
		s.failoverEpoch = 0
	case "+slave", "+convert-to-slave", "+reboot", "-sdown", "+sdown", "+odown", "-odown":
		if in.kind != "master" && in.kind != "slave" {
			return // a Sentinel instance, not a Redis node
		}
		w.addNodeLocked(in.addr)
		w.kickNodeLocked(in.addr)
	}
}
