package cluster

import (
	"sync"
	"time"
)

// diskStall holds Raft's log writes while on, as a stalled disk would
// (StallLog). Raft appends from its main loop, so a stalled follower
// stops applying entries, while the transport's heartbeat fast path keeps
// answering: raft's LastContact stays fresh over a lagging FSM (InContact
// drops it once the leader's commit index runs ahead of it).
type diskStall struct {
	mu      sync.Mutex
	release chan struct{} // nil: not stalled; closed when released
}

// wait blocks while the stall is on, at most limit.
func (s *diskStall) wait(limit time.Duration) {
	if s == nil {
		return
	}
	s.mu.Lock()
	ch := s.release
	s.mu.Unlock()
	if ch == nil {
		return
	}
	select {
	case <-ch:
	case <-time.After(limit):
	}
}

func (s *diskStall) set(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case on && s.release == nil:
		s.release = make(chan struct{})
	case !on && s.release != nil:
		close(s.release)
		s.release = nil
	}
}

// maxDiskStall bounds one stalled write, so that a switch left on cannot
// hold a shutdown for long.
const maxDiskStall = 30 * time.Second

// StallLog holds (true) or lets go (false) this node's Raft log writes,
// as if its disk stopped answering: a follower keeps answering heartbeats
// but applies nothing new. It is a fault-injection switch for tests and
// drills, not for production use.
func (a *Agent) StallLog(on bool) {
	a.stall.set(on)
	a.log.Warn("raft log stall switched", "stalled", on)
}
