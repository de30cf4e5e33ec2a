package cluster

import (
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// contactTransport is Raft's network transport noting when each peer last
// answered an AppendEntries. On the leader that includes the heartbeats,
// sent to every follower each heartbeat_timeout/10, so it is each
// follower's last contact: hashicorp/raft keeps it per follower but does
// not export it. Embedding the concrete transport keeps its optional
// interfaces (WithClose, WithPreVote, WithPeers).
type contactTransport struct {
	*raft.NetworkTransport
	mu   sync.Mutex
	last map[raft.ServerID]time.Time
	// On a follower: the last commitRing AppendEntries received (Consumer).
	seen [commitRing]commitSeen
	next int

	consumeOnce sync.Once
	out         chan raft.RPC
	closeOnce   sync.Once
	done        chan struct{}
}

func newContactTransport(t *raft.NetworkTransport) *contactTransport {
	return &contactTransport{NetworkTransport: t, last: map[raft.ServerID]time.Time{}, done: make(chan struct{})}
}

func (t *contactTransport) AppendEntries(id raft.ServerID, target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	err := t.NetworkTransport.AppendEntries(id, target, args, resp)
	if err == nil {
		t.mu.Lock()
		t.last[id] = time.Now()
		t.mu.Unlock()
	}
	return err
}

// lastContact returns when peer id last answered; zero if never.
func (t *contactTransport) lastContact(id raft.ServerID) time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.last[id]
}

// commitSeen is one AppendEntries a follower received: when, from which
// leader, and the leader's commit index in it.
type commitSeen struct {
	at     time.Time
	leader raft.ServerAddress
	commit uint64
}

// commitRing is how many recent AppendEntries a follower keeps: the
// leader sends one at least every 2*CommitTimeout, so a few cover
// ContactBound.
const commitRing = 16

// Consumer feeds Raft the RPCs of the inner transport after noting, for
// each AppendEntries, the leader's commit index (followerCaughtUp).
// Heartbeats do not pass here (the transport's fast path) and carry no
// commit index.
func (t *contactTransport) Consumer() <-chan raft.RPC {
	t.consumeOnce.Do(func() {
		in := t.NetworkTransport.Consumer()
		t.out = make(chan raft.RPC)
		go func() {
			for {
				var rpc raft.RPC
				select {
				case rpc = <-in:
				case <-t.done:
					return
				}
				if req, ok := rpc.Command.(*raft.AppendEntriesRequest); ok && req.LeaderCommitIndex > 0 {
					t.mu.Lock()
					t.seen[t.next%commitRing] = commitSeen{at: time.Now(), leader: raft.ServerAddress(req.Addr), commit: req.LeaderCommitIndex}
					t.next++
					t.mu.Unlock()
				}
				select {
				case t.out <- rpc:
				case <-t.done:
					return
				}
			}
		}()
	})
	return t.out
}

// Close stops the forwarding goroutine and closes the inner transport.
func (t *contactTransport) Close() error {
	t.closeOnce.Do(func() { close(t.done) })
	return t.NetworkTransport.Close()
}

// caughtUp reports whether leader, at some moment younger than bound,
// had committed nothing beyond applied: some AppendEntries received from
// it since then carried a commit index <= applied.
func (t *contactTransport) caughtUp(leader raft.ServerAddress, applied uint64, bound time.Duration) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, s := range t.seen {
		if s.leader == leader && s.commit <= applied && !s.at.IsZero() && time.Since(s.at) < bound {
			return true
		}
	}
	return false
}
