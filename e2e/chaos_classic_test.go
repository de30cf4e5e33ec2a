//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/redhaven/redhaven/e2e/chaos"
)

// The classic stack under TestChaos (CHAOS_STACK=classic|both): the same
// schedule from the same seed against HAProxy + keepalived + Sentinel in
// the same containers (classic_test.go), redhaven's agents stopped. The
// faults that name the agent apply to the classic stack's daemons.

const (
	stackRedhaven = "redhaven"
	stackClassic  = "classic"
)

// classicFault says what a fault of the schedule does on the classic
// stack where that differs from redhaven ("" where it is the same).
func classicFault(f chaos.Fault) string {
	switch f.Kind {
	case chaos.FaultKillAgent:
		return "classic: kill -9 haproxy + keepalived (and their supervisors), restart at the end"
	case chaos.FaultPauseAgent:
		return "classic: SIGSTOP haproxy (master and workers) + keepalived (both processes), SIGCONT at the end"
	case chaos.FaultRolling:
		return "classic: restart haproxy + keepalived on every node in turn"
	case chaos.FaultPlanned:
		return "classic: SENTINEL FAILOVER"
	case chaos.FaultKillNode:
		return "classic: restarts redis, sentinel, haproxy, keepalived"
	}
	if f.Target == "leader" {
		return "classic: leader = keepalived's MASTER (the classic VIP holder)"
	}
	return ""
}

// formatScheduleFor is chaos.FormatSchedule with, for the classic stack,
// what each agent fault does there instead.
func formatScheduleFor(stack string, seed uint64, sched []chaos.Fault) string {
	if stack != stackClassic {
		return chaos.FormatSchedule(seed, sched)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "seed %d, %d faults (classic stack: HAProxy :%d + keepalived VIP, redhaven's agents stopped)\n", seed, len(sched), classicPort)
	for _, f := range sched {
		b.WriteString(f.String())
		if s := classicFault(f); s != "" {
			b.WriteString("  [" + s + "]")
		}
		b.WriteString("\n")
	}
	return b.String()
}

// classicSignal sends sig to node's HAProxy (master and workers) and
// keepalived (parent and VRRP child); for KILL it kills their supervisors
// first, so that nothing restarts them before the fault ends (like
// redhaven's agent, which runs unsupervised under TestChaos).
func (n *nemesis) classicSignal(node, sig string) {
	script := fmt.Sprintf(`
for s in haproxy keepalived; do
	if [ %[1]s = KILL ] && [ -f /run/e2e-sup-$s.pid ]; then kill -KILL "$(cat /run/e2e-sup-$s.pid)" 2>/dev/null; rm -f /run/e2e-sup-$s.pid; fi
done
for f in /run/e2e-haproxy.pid /run/e2e-keepalived.pid /run/e2e-ka-vrrp.pid; do
	[ -f "$f" ] || continue
	p=$(cat "$f")
	kids=""
	[ "$f" = /run/e2e-haproxy.pid ] && kids=$(pgrep -P "$p")
	kill -%[1]s "$p" $kids 2>/dev/null
done
true`, sig)
	if out, err := n.c.exec(n.ctx, node, "sh", "-c", script); err != nil {
		n.t.Logf("nemesis: classic %s on %s: %v %s", sig, node, err, out)
	}
}

// classicPlanned is the classic stack's planned failover: SENTINEL
// FAILOVER on the first Sentinel that takes it.
func (n *nemesis) classicPlanned() {
	c := n.c
	for _, m := range c.up() {
		out, err := c.exec(n.ctx, m, "redis-cli", "-p", "26379", "SENTINEL", "FAILOVER", masterName)
		if err == nil && strings.TrimSpace(out) == "OK" {
			return
		}
		n.t.Logf("nemesis: SENTINEL FAILOVER on %s: %v %s", m, err, out)
	}
}

// classicRolling restarts HAProxy and keepalived on every running node in
// turn, waiting (bounded) for the classic VIP to carry writes again.
func (n *nemesis) classicRolling() {
	c := n.c
	for _, m := range c.up() {
		for _, s := range []string{"haproxy", "keepalived"} {
			if out, err := c.exec(n.ctx, m, "/e2e/node.sh", "stop-service", s); err != nil {
				n.t.Logf("nemesis: stop %s on %s: %v %s", s, m, err, out)
			}
		}
		for _, s := range []string{"haproxy", "keepalived"} {
			if err := c.env.ExecDetached(n.ctx, m, append([]string{"/e2e/node.sh", "supervise", s}, classicServiceCmd[s]...)...); err != nil {
				n.t.Logf("nemesis: start %s on %s: %v", s, m, err) // not fatal: the nemesis runs in its own goroutine
			}
		}
		c.tryPoll(n.ctx, 30*time.Second, func() bool {
			return len(c.classicHolders(n.ctx)) == 1 &&
				c.redis(n.ctx, c.classicVIP(), classicPort, "SET", "e2e:classic", "1") == "OK"
		})
	}
}

// waitClassicHealthy waits until Sentinel's majority names a master that
// says so, every running replica is linked to it, one node holds the
// classic VIP and a SET through it succeeds: twice in a row.
func (c *cluster) waitClassicHealthy(ctx context.Context, d time.Duration) {
	c.t.Helper()
	var why string
	good := 0
	ok := c.tryPoll(ctx, d, func() bool {
		why = c.classicProblem(ctx)
		if why == "" {
			good++
		} else {
			good = 0
		}
		return good >= 2
	})
	if !ok {
		c.t.Fatalf("classic stack not healthy within %v: %s", d, why)
	}
}

func (c *cluster) classicProblem(ctx context.Context) string {
	mip := c.sentinelMaster(ctx)
	master := c.nodeOf(mip)
	if master == "" {
		return "no Sentinel majority on a master"
	}
	if !c.sentinelsSettled(ctx, mip) {
		return "sentinels not settled"
	}
	if !strings.HasPrefix(c.redis(ctx, master, 6379, "ROLE"), "master") {
		return master + " is not ROLE master"
	}
	for _, n := range c.up() {
		if n == master {
			continue
		}
		info := c.redis(ctx, n, 6379, "INFO", "replication")
		if !strings.Contains(info, "master_host:"+mip) || !strings.Contains(info, "master_link_status:up") {
			return n + " not a linked replica of " + master
		}
	}
	if hs := c.classicHolders(ctx); len(hs) != 1 {
		return fmt.Sprintf("classic VIP holders %v", hs)
	}
	if r := c.redis(ctx, c.classicVIP(), classicPort, "SET", "e2e:health", "1"); r != "OK" {
		return fmt.Sprintf("SET through the classic VIP: %q", r)
	}
	return ""
}

// chaosRow is one stack's figures in the side-by-side report.
type chaosRow struct {
	ops                                        int
	faults, notApplied, master                 string
	acked                                      int
	lostRepl, lostWiped, lostUnrepl, lostOther int
	duplicated, phantom, failedSeen, readsBad  int
	regChecked, regSegments                    int
	linearizable                               bool
	illegal, undecided                         int
	availPct                                   float64
	longestGap                                 time.Duration
	worstErrs                                  int
	worstFault                                 string
	errors                                     int
	doubleMs, gapMs                            float64
}

// chaosTable is the side-by-side report: one column per stack, the same
// rows. A stack whose run failed before its checkers has no column.
func chaosTable(seed uint64, dur time.Duration, stacks []string, rows map[string]*chaosRow) string {
	var b strings.Builder
	fmt.Fprintf(&b, "chaos side by side: seed %d, %v, %s UTC\n\n", seed, dur, time.Now().UTC().Format("2006-01-02 15:04"))
	var cols []string
	for _, s := range stacks {
		if rows[s] != nil {
			cols = append(cols, s)
		}
	}
	b.WriteString("| |")
	for _, s := range cols {
		b.WriteString(" " + s + " |")
	}
	b.WriteString("\n|---|")
	for range cols {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	line := func(name string, f func(r *chaosRow) string) {
		b.WriteString("| " + name + " |")
		for _, s := range cols {
			b.WriteString(" " + f(rows[s]) + " |")
		}
		b.WriteString("\n")
	}
	line("operations", func(r *chaosRow) string { return fmt.Sprint(r.ops) })
	line("faults injected", func(r *chaosRow) string { return r.faults })
	line("faults not applied or not healed", func(r *chaosRow) string { return r.notApplied })
	line("acked list writes", func(r *chaosRow) string { return fmt.Sprint(r.acked) })
	line("lost: replication at a crash", func(r *chaosRow) string { return fmt.Sprint(r.lostRepl) })
	line("lost: master restarted empty", func(r *chaosRow) string { return fmt.Sprint(r.lostWiped) })
	line("lost: unreplicated (acked by the current master, no replica had it)", func(r *chaosRow) string { return fmt.Sprint(r.lostUnrepl) })
	line("lost: other", func(r *chaosRow) string { return fmt.Sprint(r.lostOther) })
	line("list anomalies (dup/phantom/failed-seen/bad reads)", func(r *chaosRow) string {
		return fmt.Sprintf("%d/%d/%d/%d", r.duplicated, r.phantom, r.failedSeen, r.readsBad)
	})
	line("registers linearizable", func(r *chaosRow) string {
		return fmt.Sprintf("%v (%d ops, %d segments, %d illegal, %d undecided)", r.linearizable, r.regChecked, r.regSegments, r.illegal, r.undecided)
	})
	line("writes acked in 100 ms buckets", func(r *chaosRow) string { return fmt.Sprintf("%.1f%%", r.availPct) })
	line("longest write gap", func(r *chaosRow) string { return r.longestGap.Round(time.Millisecond).String() })
	line("client errors (fail+unknown)", func(r *chaosRow) string { return fmt.Sprint(r.errors) })
	line("most errors, one client in one fault", func(r *chaosRow) string { return fmt.Sprintf("%d (%s)", r.worstErrs, r.worstFault) })
	line("two VIP holders", func(r *chaosRow) string { return fmt.Sprintf("%.0f ms", r.doubleMs) })
	line("longest time no VIP holder", func(r *chaosRow) string { return fmt.Sprintf("%.0f ms", r.gapMs) })
	line("final master", func(r *chaosRow) string { return r.master })
	return b.String()
}

// tryStartClassicNode is startClassicNode returning the first error
// instead of failing the test (the nemesis runs in its own goroutine,
// and an overlapping fault may have killed the container meanwhile).
func (c *cluster) tryStartClassicNode(ctx context.Context, n string) error {
	for _, name := range []string{"haproxy", "keepalived"} {
		cmd := classicServiceCmd[name]
		if err := c.env.ExecDetached(ctx, n, append([]string{"/e2e/node.sh", "supervise", name}, cmd...)...); err != nil {
			return fmt.Errorf("start %s: %w", name, err)
		}
	}
	if err := c.env.ExecDetached(ctx, n, "/e2e/node.sh", "vip-sampler", c.classicVIP(), classicVIPLog); err != nil {
		return fmt.Errorf("start the classic VIP sampler: %w", err)
	}
	return nil
}
