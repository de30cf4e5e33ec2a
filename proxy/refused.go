package proxy

import (
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// refusedCounter counts the commands the proxy refused, by command (the
// names come from the table and the deny list: a bounded set), and logs
// them at most once per refusedLogEvery.
type refusedCounter struct {
	mu      sync.Mutex
	counts  map[string]*atomic.Int64
	lastLog time.Time
	unseen  int64 // refusals since the last log line
}

const refusedLogEvery = 10 * time.Second

func (r *refusedCounter) note(s *session, label string) {
	r.mu.Lock()
	if r.counts == nil {
		r.counts = map[string]*atomic.Int64{}
	}
	c := r.counts[label]
	if c == nil {
		c = &atomic.Int64{}
		r.counts[label] = c
	}
	c.Add(1)
	r.unseen++
	now := time.Now()
	logIt := now.Sub(r.lastLog) >= refusedLogEvery
	var n int64
	if logIt {
		r.lastLog, n, r.unseen = now, r.unseen, 0
	}
	r.mu.Unlock()
	if logIt {
		s.logger().Warn("command refused by the proxy (proxy.deny_commands, or never allowed)",
			"command", label, "client_addr", s.client.RemoteAddr().String(), "refused_since_last_log", n)
	}
}

// snapshot returns the counts by command, sorted by name.
func (r *refusedCounter) snapshot() []RefusedCommand {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]RefusedCommand, 0, len(r.counts))
	for name, c := range r.counts {
		out = append(out, RefusedCommand{Command: name, Count: c.Load()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Command < out[j].Command })
	return out
}

// RefusedCommand is how often one command was refused by the proxy.
type RefusedCommand struct {
	Command string
	Count   int64
}
