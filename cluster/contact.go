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
}

func newContactTransport(t *raft.NetworkTransport) *contactTransport {
	return &contactTransport{NetworkTransport: t, last: map[raft.ServerID]time.Time{}}
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
