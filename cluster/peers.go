package cluster

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
)

// peersFile keeps the gossip addresses of the last known alive members in
// the data dir, so that a restarted node finds its cluster again even when
// its own join list names only itself (serf's snapshot does the same).
const peersFile = "gossip-peers.json"

func (a *Agent) loadPeers() []string {
	b, err := os.ReadFile(filepath.Join(a.cfg.DataDir, peersFile))
	if err != nil {
		return nil
	}
	var peers []string
	if err := json.Unmarshal(b, &peers); err != nil {
		a.log.Warn("ignoring unreadable peers file", "path", filepath.Join(a.cfg.DataDir, peersFile), "error", err)
		return nil
	}
	return peers
}

// alivePeers lists the alive members' gossip addresses except this node.
func (a *Agent) alivePeers() []string {
	a.mu.RLock()
	defer a.mu.RUnlock()
	var out []string
	for _, m := range a.members {
		if m.state == GossipAlive && m.name != a.cfg.NodeName && !m.meta.Leaving {
			out = append(out, m.addr)
		}
	}
	slices.Sort(out)
	return out
}

// savePeers writes peers atomically.
func (a *Agent) savePeers(peers []string) error {
	b, err := json.Marshal(peers)
	if err != nil {
		return err
	}
	path := filepath.Join(a.cfg.DataDir, peersFile)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o640); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("rename %s: %w", tmp, err)
	}
	return nil
}
