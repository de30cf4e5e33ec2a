package main

import (
	"os"
	"strconv"
	"strings"
	"time"
)

// CPU time per phase, read from /proc: robust to a noisy machine where the
// latency is not. Clock ticks are taken as 1/100 s (USER_HZ on Linux).
const tick = 10 * time.Millisecond

type cpuPIDs struct{ agent, flood, sink int }

// cpuTimes is CPU time used: by the agent, the flood and sink processes
// (utime+stime, all threads) and by CPU0 and CPU1 as a whole (everything
// but idle and iowait, softirq included).
type cpuTimes struct {
	agent, flood, sink time.Duration
	busy               [2]time.Duration
}

func readCPU(p cpuPIDs) cpuTimes {
	t := cpuTimes{agent: procCPU(p.agent), flood: procCPU(p.flood), sink: procCPU(p.sink)}
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return t
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 9 || (f[0] != "cpu0" && f[0] != "cpu1") {
			continue
		}
		var busy int64
		for i, v := range f[1:9] { // user nice system idle iowait irq softirq steal
			if i == 3 || i == 4 {
				continue
			}
			n, _ := strconv.ParseInt(v, 10, 64)
			busy += n
		}
		t.busy[f[0][3]-'0'] = time.Duration(busy) * tick
	}
	return t
}

func (t cpuTimes) sub(u cpuTimes) cpuTimes {
	return cpuTimes{
		agent: t.agent - u.agent, flood: t.flood - u.flood, sink: t.sink - u.sink,
		busy: [2]time.Duration{t.busy[0] - u.busy[0], t.busy[1] - u.busy[1]},
	}
}

// procCPU is utime+stime of process pid (0 or gone: 0).
func procCPU(pid int) time.Duration {
	if pid <= 0 {
		return 0
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses and may hold spaces.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64) // field 14
	st, _ := strconv.ParseInt(f[12], 10, 64) // field 15
	return time.Duration(ut+st) * tick
}
