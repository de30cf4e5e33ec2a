package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// Key rotation across the cluster: each step (install, use, remove) is run
// on every member over the admin channel, never through Raft, so that no
// key is ever written to raft.db or a snapshot. Keys are shown as
// fingerprints only (KeyFingerprint), never in clear.

// Key rotation errors.
var (
	// ErrNotKeyed: the node runs without cluster.encrypt.
	ErrNotKeyed = errors.New("cluster: no cluster key")
	// ErrKeyNotInstalled: the key is not installed on a node.
	ErrKeyNotInstalled = errors.New("cluster: key is not installed")
	// ErrPrimaryKey: the key is a node's primary key.
	ErrPrimaryKey = errors.New("cluster: key is the primary key")
)

// Key operations.
const (
	KeyList    = "list"
	KeyInstall = "install"
	KeyUse     = "use"
	KeyRemove  = "remove"
)

// keyOp is a key operation on the admin channel (the key travels inside
// the mutual TLS of the Raft port).
type keyOp struct {
	Op  string `json:"op"`
	Key string `json:"key,omitempty"`
}

// KeyRing is a node's installed keys, as fingerprints.
type KeyRing struct {
	Primary string   `json:"primary"` // fingerprint of the key that encrypts and signs
	Keys    []string `json:"keys"`    // fingerprints of every installed key, sorted
}

// KeyFingerprint names a key without revealing it: the first 8 bytes of
// its SHA-256, hex ("" for a key that does not decode).
func KeyFingerprint(key string) string {
	k, err := decodeKey(key)
	if err != nil || k == nil {
		return ""
	}
	return fingerprint(k)
}

func fingerprint(k []byte) string {
	sum := sha256.Sum256(k)
	return hex.EncodeToString(sum[:8])
}

// Keys returns this node's key ring (ErrNotKeyed without a cluster key).
func (a *Agent) Keys() (KeyRing, error) {
	a.mu.RLock()
	kr := a.keyring
	a.mu.RUnlock()
	if kr == nil {
		return KeyRing{}, fmt.Errorf("%w: this node was started without cluster.encrypt", ErrNotKeyed)
	}
	var out KeyRing
	out.Primary = fingerprint(kr.GetPrimaryKey())
	for _, k := range kr.GetKeys() {
		out.Keys = append(out.Keys, fingerprint(k))
	}
	slices.Sort(out.Keys)
	return out, nil
}

// keyOpLocal runs one key operation on this node and returns its ring
// afterwards.
func (a *Agent) keyOpLocal(op keyOp) (KeyRing, error) {
	a.keyMu.Lock()
	defer a.keyMu.Unlock()
	var err error
	switch op.Op {
	case KeyList:
	case KeyInstall:
		err = a.InstallKey(op.Key)
	case KeyUse:
		err = a.UseKey(op.Key)
	case KeyRemove:
		err = a.RemoveKey(op.Key)
	default:
		err = fmt.Errorf("%w: key operation %q: want list, install, use or remove", ErrBadRequest, op.Op)
	}
	kr, kerr := a.Keys()
	if err == nil {
		err = kerr
	}
	return kr, err
}

// KeyResult is one node's outcome of a cluster-wide key operation.
type KeyResult struct {
	Node  string  `json:"node"`
	Keys  KeyRing `json:"keys"`
	Error string  `json:"error,omitempty"`
	err   error
}

// Err is the node's error, nil when it succeeded (errors.Is works on it).
func (r KeyResult) Err() error { return r.err }

// keyFanOutTimeout bounds one node's answer in a fan-out.
const keyFanOutTimeout = 10 * time.Second

// RotateKey runs a key operation (KeyList, KeyInstall, KeyUse, KeyRemove)
// on every member that gossip shows alive, this node included, in
// parallel over the admin channel, and returns one result per node sorted
// by name. Before `use` and `remove` it checks every node's ring and
// refuses (nothing changed) when a reachable node lacks the key to use,
// or uses the key to remove as its primary: that node would be cut off.
// The operations are idempotent: run a step again after a partial failure.
func (a *Agent) RotateKey(ctx context.Context, op, key string) ([]KeyResult, error) {
	switch op {
	case KeyList:
	case KeyInstall, KeyUse, KeyRemove:
		if fp := KeyFingerprint(key); fp == "" {
			_, err := decodeKey(key)
			return nil, fmt.Errorf("%w: cluster key: %v", ErrBadRequest, errOr(err, "empty"))
		}
	default:
		return nil, fmt.Errorf("%w: key operation %q: want list, install, use or remove", ErrBadRequest, op)
	}
	if _, err := a.Keys(); err != nil {
		return nil, err
	}
	if op == KeyUse || op == KeyRemove {
		fp := KeyFingerprint(key)
		for _, r := range a.fanOutKeys(ctx, keyOp{Op: KeyList}) {
			switch {
			case r.err != nil:
				continue // reported by the step itself
			case op == KeyUse && !slices.Contains(r.Keys.Keys, fp):
				return nil, fmt.Errorf("%w on %s (fingerprint %s): run `keys install` first", ErrKeyNotInstalled, r.Node, fp)
			case op == KeyRemove && r.Keys.Primary == fp:
				return nil, fmt.Errorf("%w of %s (fingerprint %s): run `keys use` with the new key first", ErrPrimaryKey, r.Node, fp)
			}
		}
	}
	return a.fanOutKeys(ctx, keyOp{Op: op, Key: key}), nil
}

func errOr(err error, s string) error {
	if err != nil {
		return err
	}
	return errors.New(s)
}

// fanOutKeys runs op on this node and on every other alive member.
func (a *Agent) fanOutKeys(ctx context.Context, op keyOp) []KeyResult {
	type target struct{ name, raftAddr string }
	var targets []target
	var skipped []KeyResult // Raft servers gossip does not show alive: said, not hidden
	for _, m := range a.Members() {
		switch {
		case m.Self:
		case (m.GossipState == GossipAlive || m.GossipState == GossipLeaving) && m.RaftAddr != "":
			targets = append(targets, target{m.Name, m.RaftAddr})
		case m.Suffrage != "none":
			skipped = append(skipped, KeyResult{Node: m.Name,
				err: fmt.Errorf("%s is %s in gossip, not reached: run this step again once it is back", m.Name, m.GossipState)})
		}
	}
	results := make([]KeyResult, len(targets)+1, len(targets)+1+len(skipped))
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, keyFanOutTimeout)
			defer cancel()
			r := KeyResult{Node: t.name}
			ans, err := a.ask(cctx, t.name, t.raftAddr, adminRequest{Key: &op})
			switch {
			case err != nil:
				r.err = err
			case ans.Error != "":
				r.err = decodeWireError(ans.Kind, ans.Error)
			}
			if ans.Keys != nil {
				r.Keys = *ans.Keys
			}
			results[i] = r
		}()
	}
	// This node last among equals: a remove here does not cut the
	// exchanges with the others (only Raft connections are closed).
	self := KeyResult{Node: a.cfg.NodeName}
	self.Keys, self.err = a.keyOpLocal(op)
	wg.Wait()
	results[len(targets)] = self
	results = append(results, skipped...)
	for i := range results {
		if results[i].err != nil {
			results[i].Error = results[i].err.Error()
		}
	}
	slices.SortFunc(results, func(x, y KeyResult) int {
		if x.Node < y.Node {
			return -1
		}
		if x.Node > y.Node {
			return 1
		}
		return 0
	})
	return results
}
