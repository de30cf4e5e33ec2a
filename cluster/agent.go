package cluster

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	sockaddr "github.com/hashicorp/go-sockaddr"
	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

// Agent is one node's membership in the redhaven cluster: gossip, Raft and
// the replicated state. Build it with New, drive it with Run.
type Agent struct {
	cfg       Config
	log       *slog.Logger
	key       []byte   // primary cluster key (nil: none)
	extraKeys [][]byte // secondary keys accepted during a rotation

	bindIP     net.IP
	bindPort   int
	advIP      net.IP
	advPort    int // 0 = the bound port
	raftAdvert string
	stream     *streamLayer
	isolated   atomic.Bool
	stall      diskStall // StallLog (stall.go)

	fsm       *fsm
	leaseReq  leaseClients  // this node's lease requests, per VIP (lease.go)
	leaseIn   chan leaseCmd // followers' lease requests, for leaseLoop
	routed    *routedState  // what each proxy routes by (routed.go)
	changes   chan struct{}
	bootHint  chan struct{}
	reconHint chan struct{}

	started atomic.Bool
	leaving atomic.Bool
	// restarting: the process hands over to its successor (cluster/restart.go)
	restarting atomic.Bool

	// raftNames maps Raft addresses to server IDs of the last read
	// configuration: the certificate of a dialled server must name it.
	raftNames atomic.Pointer[map[string]string]
	logLimit  *throttle // repeated warnings: first one, then a count

	keyMu  sync.Mutex // one key operation at a time (keys.go)
	metaMu sync.Mutex // one gossip metadata update at a time (setMeta)

	rejectMu sync.Mutex
	rejected map[rejectKey]uint64

	mu           sync.RWMutex
	contact      *contactTransport // when each follower last answered (read on the leader)
	raft         *raft.Raft
	ml           *memberlist.Memberlist
	keyring      *memberlist.Keyring // nil without a cluster key
	meta         nodeMeta
	members      map[string]*memberState
	lastVerified time.Time // start of the leader's last successful VerifyLeader
	leaderSince  time.Time // when this node last became leader (routed.go)
	gossipAddr   string    // advertised gossip host:port
}

// nodeMeta is this node's gossip metadata (JSON, short keys: memberlist
// allows 512 bytes).
type nodeMeta struct {
	Name    string `json:"n"`
	Raft    string `json:"r"`
	HTTP    string `json:"h,omitempty"`
	Version string `json:"v,omitempty"`
	// Boot: this node's Raft has a configuration (bootstrapped or added),
	// so no newcomer may bootstrap a second cluster.
	Boot bool `json:"b,omitempty"`
	// Leaving: a graceful leave is in progress (serf's leave intent);
	// the leader removes the server and the later gossip "dead" of this
	// node is read as "left".
	Leaving bool `json:"l,omitempty"`
}

// Gossip states reported in Member.GossipState.
const (
	GossipAlive   = "alive"
	GossipLeaving = "leaving"
	GossipLeft    = "left"
	GossipDead    = "dead"
	GossipUnknown = "unknown" // in the Raft configuration, never seen by gossip
)

type memberState struct {
	name    string
	addr    string
	meta    nodeMeta
	hasMeta bool
	state   string // alive, left, dead
	since   time.Time
	// verifiedAddr is the Raft address that answered, during this alive
	// period of the member, with a certificate for its name (probeClaim);
	// reset when it changes its address or comes back after dead/left.
	verifiedAddr string
	probed       time.Time // last failed probe (rate limit)
}

// New validates cfg and binds the Raft listener (so RaftAddr is known); it
// starts no goroutine. The gossip ports are bound by Run.
func New(cfg Config, logger *slog.Logger) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	key, _ := decodeKey(cfg.Encrypt)
	a := &Agent{
		cfg:       cfg,
		log:       logger.With("component", "cluster", "node", cfg.NodeName),
		key:       key,
		changes:   make(chan struct{}, 1),
		bootHint:  make(chan struct{}, 1),
		reconHint: make(chan struct{}, 1),
		members:   map[string]*memberState{},
		logLimit:  newThrottle(logThrottleEvery),
		rejected:  map[rejectKey]uint64{},
		leaseIn:   make(chan leaseCmd, 16),
		routed:    newRoutedState(),
	}
	for _, k := range cfg.EncryptKeys {
		ek, _ := decodeKey(k)
		a.extraKeys = append(a.extraKeys, ek)
	}
	a.fsm = newFSM(a.notify, cfg.DefaultService())
	a.bindIP, a.bindPort, _ = splitBind(cfg.Bind)
	a.advIP, a.advPort = a.bindIP, a.bindPort
	if cfg.Advertise != "" {
		a.advIP, a.advPort, _ = splitAdvertise(cfg.Advertise, a.bindPort)
	} else if a.bindIP.IsUnspecified() {
		ip, err := sockaddr.GetPrivateIP()
		if err != nil || ip == "" {
			return nil, fmt.Errorf("cluster.advertise: bind %s has no single address and no private IP was found, set an address: %v", cfg.Bind, err)
		}
		a.advIP = net.ParseIP(ip)
	}

	ln, err := net.Listen("tcp", cfg.RaftBind)
	if err != nil {
		return nil, fmt.Errorf("cluster.raft_bind: listen %s: %w", cfg.RaftBind, err)
	}
	lnPort := ln.Addr().(*net.TCPAddr).Port
	rip, _, _ := splitBind(cfg.RaftBind)
	rport := lnPort
	switch {
	case cfg.RaftAdvertise != "":
		rip, rport, _ = splitAdvertise(cfg.RaftAdvertise, lnPort)
	case rip.IsUnspecified():
		rip = a.advIP
	}
	a.raftAdvert = net.JoinHostPort(rip.String(), strconv.Itoa(rport))
	a.stream = newStreamLayer(ln, &net.TCPAddr{IP: rip, Port: rport}, &a.isolated)
	a.stream.nameOf = a.raftNameOf
	a.stream.admin = a.serveAdminConn
	a.stream.reject = func(remote net.Addr, reason string, err error) {
		a.countReject("raft", reason, remote.String(), err)
	}
	if a.stream.tls, err = a.newRaftTLS(); err != nil {
		_ = ln.Close()
		return nil, err
	}
	if a.advPort != 0 {
		a.gossipAddr = net.JoinHostPort(a.advIP.String(), strconv.Itoa(a.advPort))
	}
	a.meta = nodeMeta{Name: cfg.NodeName, Raft: a.raftAdvert, HTTP: cfg.HTTPAddr, Version: cfg.Version}
	return a, nil
}

// newRaftTLS picks the Raft TLS material: the operator's files, else the
// cluster keys, else (no key, not insecure: a single node) a random key
// nobody else holds, so that no one can speak Raft to this node. Only
// cluster.insecure without key or files gives plain text.
func (a *Agent) newRaftTLS() (*raftTLS, error) {
	switch {
	case a.cfg.TLS.Enabled():
		return newFileTLS(a.cfg.NodeName, a.cfg.TLS, a.log)
	case a.key != nil:
		return newKeyTLS(a.cfg.NodeName, a.key, a.extraKeys, a.log)
	case a.cfg.Insecure:
		return nil, nil
	}
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		return nil, fmt.Errorf("cluster: random raft key: %w", err)
	}
	return newKeyTLS(a.cfg.NodeName, k, nil, a.log)
}

// raftNameOf is the server ID at a Raft address in the last read
// configuration ("" when unknown).
func (a *Agent) raftNameOf(addr string) string {
	if m := a.raftNames.Load(); m != nil {
		return (*m)[addr]
	}
	return ""
}

// refreshRaftNames re-reads the Raft configuration's address -> ID map.
func (a *Agent) refreshRaftNames(r *raft.Raft) {
	f := r.GetConfiguration()
	if f.Error() != nil {
		return
	}
	m := map[string]string{}
	for _, s := range f.Configuration().Servers {
		m[string(s.Address)] = string(s.ID)
	}
	a.raftNames.Store(&m)
}

// rejectKey labels redhaven_cluster_rejected_connections_total.
type rejectKey struct{ transport, reason string }

// RejectedConnections is one counter of refused cluster connections
// (redhaven_cluster_rejected_connections_total{transport,reason}).
type RejectedConnections struct {
	Transport string `json:"transport"` // raft or gossip
	Reason    string `json:"reason"`    // Reject* constants
	Count     uint64 `json:"count"`
}

// RejectedConnections returns the counters of refused Raft connections
// and gossip messages since start, sorted by transport and reason.
func (a *Agent) RejectedConnections() []RejectedConnections {
	a.rejectMu.Lock()
	out := make([]RejectedConnections, 0, len(a.rejected))
	for k, n := range a.rejected {
		out = append(out, RejectedConnections{Transport: k.transport, Reason: k.reason, Count: n})
	}
	a.rejectMu.Unlock()
	slices.SortFunc(out, func(x, y RejectedConnections) int {
		return strings.Compare(x.Transport+"/"+x.Reason, y.Transport+"/"+y.Reason)
	})
	return out
}

// countReject counts a refused connection and logs it, throttled per
// transport, reason and remote host.
func (a *Agent) countReject(transport, reason, remote string, err error) {
	a.rejectMu.Lock()
	a.rejected[rejectKey{transport, reason}]++
	a.rejectMu.Unlock()
	host := remote
	if h, _, e := net.SplitHostPort(remote); e == nil {
		host = h
	}
	if ok, n := a.logLimit.allow("reject/" + transport + "/" + reason + "/" + host); ok {
		a.log.Warn("cluster connection rejected", "transport", transport, "reason", reason,
			"remote_addr", remote, "error", oneLine(err), "suppressed_since_last", n, "hint", rejectHint(transport, reason))
	}
}

// rejectHint says what to check for a rejected connection.
func rejectHint(transport, reason string) string {
	switch {
	case transport == "gossip":
		return "peer uses a different or no cluster key: check cluster.encrypt on every node"
	case reason == RejectNotTLS:
		return "peer speaks plain-text raft: it runs with cluster.insecure and no key, or is not a redhaven node"
	case reason == RejectUntrusted || reason == RejectNoCertificate:
		return "peer's raft certificate is not signed by an installed cluster key or cluster.tls.ca_file: check cluster.encrypt and cluster.tls on every node"
	case reason == RejectNameMismatch:
		return "the certificate at this raft address is for another node name"
	}
	return ""
}

// Reload reads the operator's Raft TLS files again (cluster.tls.*); they
// are also reloaded when they change on disk, checked at each handshake.
// A no-op with the cluster key. On error the previous files stay in use.
func (a *Agent) Reload() error {
	if a.stream.tls == nil {
		return nil
	}
	return a.stream.tls.Reload()
}

// Close releases the Raft listener bound by New when Run will not be
// called (e.g. another part failed to start). A no-op once Run started.
func (a *Agent) Close() error {
	if a.started.CompareAndSwap(false, true) {
		return a.stream.Close()
	}
	return nil
}

// Name is this node's name (its Raft server ID).
func (a *Agent) Name() string { return a.cfg.NodeName }

// RaftAddr is the advertised Raft address.
func (a *Agent) RaftAddr() string { return a.raftAdvert }

// GossipAddr is the advertised gossip address ("" before Run created
// memberlist when the bind port is 0).
func (a *Agent) GossipAddr() string {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.gossipAddr
}

func (a *Agent) raftNode() *raft.Raft {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.raft
}

func (a *Agent) memberlist() *memberlist.Memberlist {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.ml
}

// notify sends the cap-1 change hint.
func (a *Agent) notify() {
	select {
	case a.changes <- struct{}{}:
	default:
	}
}

func hint(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// Changes returns a cap-1 hint channel: something changed (leadership, the
// FSM state, membership, InContact). Re-read the state on every hint.
func (a *Agent) Changes() <-chan struct{} { return a.changes }

// Run starts memberlist and Raft, joins the seeds, bootstraps when
// bootstrap_expect servers are visible, reconciles membership while
// leader, and blocks until ctx ends. It then leaves (LeaveOnTerminate),
// shuts Raft and memberlist down and returns after every goroutine it
// started has ended. Run may be called once.
func (a *Agent) Run(ctx context.Context) (err error) {
	if !a.started.CompareAndSwap(false, true) {
		return errors.New("cluster: Run called twice or after Close")
	}
	var cleanups []stopStep // each bounded and logged (stop.go)
	cleanup := func() {
		raftStuck := false
		for i := len(cleanups) - 1; i >= 0; i-- {
			c := cleanups[i]
			if c.name == "raft store close" && raftStuck {
				// Raft may still use it; the process exits anyway.
				a.log.Error("stop: raft store left open, raft did not shut down")
				continue
			}
			if !a.bounded(c.name, c.limit, c.f) && c.name == "raft shutdown" {
				raftStuck = true
			}
		}
	}
	defer func() {
		if err != nil {
			cleanup()
		}
	}()
	cleanups = append(cleanups, stopStep{"raft listener close", stepStopLimit, func() { _ = a.stream.Close() }})

	hlog := a.newHCLog("raft")
	if err := os.MkdirAll(a.cfg.DataDir, 0o750); err != nil {
		return fmt.Errorf("data_dir: %w", err)
	}
	store, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(a.cfg.DataDir, "raft.db")})
	if err != nil {
		return fmt.Errorf("open raft store in %s: %w", a.cfg.DataDir, err)
	}
	cleanups = append(cleanups, stopStep{"raft store close", stepStopLimit, func() { _ = store.Close() }})
	snaps, err := raft.NewFileSnapshotStoreWithLogger(a.cfg.DataDir, 2, hlog)
	if err != nil {
		return fmt.Errorf("open snapshot store in %s: %w", a.cfg.DataDir, err)
	}
	hasState, err := raft.HasExistingState(store, store, snaps)
	if err != nil {
		return fmt.Errorf("read raft state in %s: %w", a.cfg.DataDir, err)
	}
	a.meta.Boot = hasState

	// Gossip first: a busy port fails fast, before Raft runs.
	nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{
		BindAddrs: []string{a.bindIP.String()},
		BindPort:  a.bindPort,
		Logger:    a.newStdLogger(),
	})
	if err != nil {
		return fmt.Errorf("cluster.bind: %s: %w", a.cfg.Bind, err)
	}
	gt := newGossipTransport(nt, &a.isolated)
	mc := memberlist.DefaultLANConfig()
	mc.Name = a.cfg.NodeName
	mc.Transport = gt
	mc.AdvertiseAddr = a.advIP.String()
	mc.AdvertisePort = a.advPort
	if mc.AdvertisePort == 0 {
		mc.AdvertisePort = nt.GetAutoBindPort()
	}
	mc.Delegate = metaDelegate{a}
	mc.Events = eventDelegate{a}
	mc.Logger = a.newStdLogger()
	if a.key != nil {
		kr, err := memberlist.NewKeyring(a.extraKeys, a.key)
		if err != nil {
			_ = gt.Shutdown()
			return fmt.Errorf("cluster.encrypt: %w", err)
		}
		mc.Keyring = kr
		a.mu.Lock()
		a.keyring = kr
		a.mu.Unlock()
	}
	ml, err := memberlist.Create(mc)
	if err != nil {
		_ = gt.Shutdown()
		return fmt.Errorf("start gossip on %s: %w", a.cfg.Bind, err)
	}
	cleanups = append(cleanups, stopStep{"memberlist shutdown", stepStopLimit, func() { _ = ml.Shutdown() }})

	trans := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  a.stream,
		MaxPool: 3,
		// 1: no pipelined replication. With raft v1.8.0's default (2) a
		// follower that fails one pipelined append (it stops, restarts,
		// or answers Success=false) can leave the leader's replication to
		// it blocked for good: the pipeline's decoder has returned, the
		// next send waits on an unbuffered channel nobody reads, and the
		// pipeline is closed only when that send returns. Raft.Shutdown
		// then never returns (seen when all agents stopped at once; the
		// same knot stops log replication to a live follower while its
		// heartbeats go on). A synchronous append is bounded by Timeout;
		// our entries are few and small.
		MaxRPCsInFlight: 1,
		Timeout:         5 * time.Second,
		Logger:          hlog,
	})
	contact := newContactTransport(trans)
	cleanups = append(cleanups, stopStep{"raft transport close", stepStopLimit, func() { _ = contact.Close() }})
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(a.cfg.NodeName)
	rc.HeartbeatTimeout = a.cfg.HeartbeatTimeout
	rc.ElectionTimeout = a.cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = a.cfg.LeaderLeaseTimeout
	// An idle leader sends each follower an AppendEntries with its commit
	// index every 1-2 CommitTimeout; a follower is in contact only with
	// one younger than ContactBound (InContact), so several must fit.
	rc.CommitTimeout = max(min(rc.CommitTimeout, a.cfg.ContactBound/6), time.Millisecond)
	rc.Logger = hlog
	logs := arrivalStore{LogStore: store, l: a.fsm.lease, stall: &a.stall} // lease.go: when lease entries arrive
	r, err := raft.NewRaft(rc, a.fsm, logs, store, snaps, contact)
	if err != nil {
		return fmt.Errorf("start raft: %w", err)
	}
	cleanups = append(cleanups, stopStep{"raft shutdown", raftStopLimit, func() {
		f := r.Shutdown()
		// The transport closes at once, not after Raft's goroutines
		// ended: when every node stops together, each one's last RPCs
		// would otherwise wait out the transport timeout (5 s) on a peer
		// whose Raft no longer answers but whose transport is still open.
		_ = contact.Close()
		_ = f.Error()
	}})
	obsCh := make(chan raft.Observation, 16)
	obs := raft.NewObserver(obsCh, false, func(o *raft.Observation) bool {
		switch o.Data.(type) {
		case raft.LeaderObservation, raft.RaftState, raft.PeerObservation, raft.ResumedHeartbeatObservation:
			return true
		}
		return false
	})
	r.RegisterObserver(obs)
	cleanups = append(cleanups, stopStep{"raft observer", stepStopLimit, func() { r.DeregisterObserver(obs) }})

	a.mu.Lock()
	a.raft, a.ml, a.contact = r, ml, contact
	a.gossipAddr = net.JoinHostPort(mc.AdvertiseAddr, strconv.Itoa(mc.AdvertisePort))
	a.mu.Unlock()
	a.log.Info("cluster agent started", "gossip_addr", a.GossipAddr(), "raft_addr", a.raftAdvert,
		"existing_state", hasState, "bootstrap_expect", a.cfg.BootstrapExpect, "encrypted", len(a.key) > 0,
		"raft_tls", a.raftTLSMode())
	if a.stream.tls == nil {
		a.log.Warn("cluster.insecure: gossip and raft run in plain text without authentication; " +
			"anyone who reaches the cluster ports can join and change where writes go; set cluster.encrypt (redhaven keygen)")
	}

	ictx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	spawn := func(f func(context.Context)) {
		wg.Add(1)
		go func() { defer wg.Done(); f(ictx) }()
	}
	spawn(a.joinLoop)
	if !hasState && a.cfg.BootstrapExpect > 0 {
		spawn(a.bootstrapLoop)
	}
	spawn(func(ctx context.Context) { a.observeLoop(ctx, obsCh) })
	spawn(a.verifyLoop)
	spawn(a.contactLoop)
	spawn(a.reconcileLoop)
	spawn(a.leaseLoop)
	spawn(a.routedLoop)

	<-ctx.Done()
	if a.cfg.LeaveOnTerminate && !a.leaving.Load() && !a.restarting.Load() {
		lctx, lcancel := context.WithTimeout(context.Background(), leaveTimeout)
		a.bounded("leave", leaveTimeout+leaveGossipTimeout+time.Second, func() {
			if err := a.Leave(lctx); err != nil {
				a.log.Warn("leave on terminate incomplete", "error", err)
			}
		})
		lcancel()
	}
	cancel()
	a.bounded("cluster loops", loopsStopLimit, wg.Wait)
	cleanup()
	a.log.Info("cluster agent stopped")
	a.notify()
	return nil
}

// raftTLSMode names the Raft transport security for the log.
func (a *Agent) raftTLSMode() string {
	switch {
	case a.stream.tls == nil:
		return "off"
	case a.cfg.TLS.Enabled():
		return "operator_pki"
	case a.key != nil:
		return "cluster_key"
	}
	return "single_node_random_key"
}

// leaveTimeout bounds the graceful leave done by Run (LeaveOnTerminate):
// waiting for the leader to remove this server (Consul waits 5s).
const leaveTimeout = 7 * time.Second

// reconnectInterval is how often failed members (and the seeds, when this
// node is alone) are contacted again; reconnectTimeout is when a failed
// member is given up (serf's reconnect_interval/reconnect_timeout).
const (
	reconnectInterval = 5 * time.Second
	reconnectTimeout  = 72 * time.Hour
)

// joinLoop joins the seeds with exponential backoff, then keeps the
// cluster whole: every reconnectInterval it tries to reach failed (not
// left) members, as serf does, so that a restarted node whose only seed is
// itself is found again, and it joins the seeds again when alone (after a
// partition heals or every peer restarted).
func (a *Agent) joinLoop(ctx context.Context) {
	targets := a.joinTargets()
	backoff := 500 * time.Millisecond
	for attempt := 1; len(targets) > 0; attempt++ {
		ml := a.memberlist()
		if ml.NumMembers() > 1 && attempt > 1 {
			break // a peer joined us meanwhile
		}
		n, err := ml.Join(targets)
		if n > 0 {
			a.log.Info("joined cluster", "seeds", targets, "contacted", n)
			break
		}
		a.log.Warn("join failed, retrying", "seeds", targets, "attempt", attempt, "retry_in", backoff,
			"error", oneLine(err), "hint", joinHint(err))
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 30*time.Second)
	}
	t := time.NewTicker(reconnectInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if a.leaving.Load() {
			continue
		}
		ml := a.memberlist()
		if ml.NumMembers() <= 1 && len(targets) > 0 {
			if n, err := ml.Join(targets); n == 0 {
				a.log.Warn("rejoin failed", "seeds", targets, "error", oneLine(err), "hint", joinHint(err))
			} else {
				a.log.Info("rejoined cluster", "seeds", targets, "contacted", n)
			}
		}
		var failed []string
		a.mu.RLock()
		for _, m := range a.members {
			if m.state == GossipDead && time.Since(m.since) < reconnectTimeout {
				failed = append(failed, m.addr)
			}
		}
		a.mu.RUnlock()
		for _, addr := range failed {
			if n, _ := ml.Join([]string{addr}); n > 0 {
				a.log.Info("reconnected to failed member", "gossip_addr", addr)
			}
		}
	}
}

// oneLine flattens multi-line errors (hashicorp/go-multierror) for logs.
func oneLine(err error) string {
	if err == nil {
		return ""
	}
	return strings.Join(strings.Fields(err.Error()), " ")
}

// joinTargets is cfg.Join normalised plus the peers remembered from the
// last run, without this node's own address.
func (a *Agent) joinTargets() []string {
	self := a.GossipAddr()
	var out []string
	for _, j := range append(slices.Clone(a.cfg.Join), a.loadPeers()...) {
		addr, err := joinAddr(j)
		if err != nil || addr == self || slices.Contains(out, addr) {
			continue
		}
		out = append(out, addr)
	}
	return out
}

// observeLoop turns Raft observations into hints and logs.
func (a *Agent) observeLoop(ctx context.Context, ch <-chan raft.Observation) {
	for {
		select {
		case <-ctx.Done():
			return
		case o := <-ch:
			switch d := o.Data.(type) {
			case raft.LeaderObservation:
				a.log.Info("raft leader changed", "leader", string(d.LeaderID), "leader_addr", string(d.LeaderAddr))
				hint(a.reconHint)
			case raft.RaftState:
				a.log.Info("raft state changed", "raft_state", d.String())
				a.mu.Lock()
				if d != raft.Leader {
					a.lastVerified = time.Time{}
				} else {
					a.leaderSince = time.Now()
				}
				a.mu.Unlock()
				hint(a.reconHint)
			case raft.PeerObservation:
				a.log.Info("raft peer changed", "peer", string(d.Peer.ID), "removed", d.Removed)
				hint(a.reconHint)
			case raft.ResumedHeartbeatObservation:
				a.log.Info("raft peer answers again", "peer", string(d.PeerID))
				a.logLimit.reset(raftPeerThrottlePrefix) // its next failure is news again
				continue
			}
			a.notify()
		}
	}
}

// verifyLoop keeps the leader's lease fresh: a successful VerifyLeader
// proves that a quorum still followed this leader after it started.
func (a *Agent) verifyLoop(ctx context.Context) {
	interval := min(max(a.cfg.ContactBound/5, 10*time.Millisecond), 100*time.Millisecond)
	t := time.NewTicker(interval)
	defer t.Stop()
	r := a.raftNode()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if r.State() != raft.Leader {
			continue
		}
		start := time.Now()
		if err := r.VerifyLeader().Error(); err != nil {
			continue
		}
		a.mu.Lock()
		a.lastVerified = start
		a.mu.Unlock()
	}
}

// contactLoop notifies Changes when InContact flips.
func (a *Agent) contactLoop(ctx context.Context) {
	t := time.NewTicker(min(max(a.cfg.ContactBound/10, 5*time.Millisecond), 50*time.Millisecond))
	defer t.Stop()
	prev := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if c := a.InContact(); c != prev {
			prev = c
			if c {
				a.log.Info("in contact with the raft quorum")
			} else {
				a.log.Warn("lost contact with the raft quorum")
			}
			a.notify()
		}
	}
}

// IsLeader reports whether this node is the Raft leader.
func (a *Agent) IsLeader() bool {
	r := a.raftNode()
	return r != nil && r.State() == raft.Leader
}

// Leader returns the current leader's name and Raft address as this node
// knows them ("" when unknown).
func (a *Agent) Leader() (name, raftAddr string) {
	r := a.raftNode()
	if r == nil {
		return "", ""
	}
	addr, id := r.LeaderWithID()
	return string(id), string(addr)
}

// InContact reports whether this node is in contact with the Raft quorum,
// i.e. whether its proxy may route writes: the leader if a leadership check
// (a quorum round trip) started less than ContactBound ago succeeded; a
// follower if it heard from a known leader less than ContactBound ago and
// has applied everything that leader had committed at some moment less
// than ContactBound ago. False before bootstrap, while a candidate, and after shutdown.
func (a *Agent) InContact() bool {
	r := a.raftNode()
	if r == nil {
		return false
	}
	switch r.State() {
	case raft.Leader:
		a.mu.RLock()
		lv := a.lastVerified
		a.mu.RUnlock()
		return !lv.IsZero() && time.Since(lv) < a.cfg.ContactBound
	case raft.Follower:
		addr, _ := r.LeaderWithID()
		if addr == "" {
			return false
		}
		lc := r.LastContact()
		if lc.IsZero() || time.Since(lc) >= a.cfg.ContactBound {
			return false
		}
		// A heartbeat proves the leader is there, not that this FSM has
		// its decisions: after a partition heals the first heartbeat
		// comes before the entries, and the state here may still name a
		// deposed master (issue 13).
		a.mu.RLock()
		ct := a.contact
		a.mu.RUnlock()
		return ct != nil && ct.caughtUp(addr, r.AppliedIndex(), a.cfg.ContactBound)
	}
	return false
}

// State returns a copy of the replicated state as applied on this node.
func (a *Agent) State() State { return a.fsm.state() }

// Isolate cuts (true) or restores (false) all of this node's Raft and gossip
// traffic, as if its network cable were pulled. It is a fault-injection
// switch for tests and drills, not for production use.
func (a *Agent) Isolate(on bool) {
	a.isolated.Store(on)
	if on {
		a.stream.closeAll()
	}
	a.log.Warn("isolation switched", "isolated", on)
}

// metaDelegate serves this node's gossip metadata.
type metaDelegate struct{ a *Agent }

func (d metaDelegate) NodeMeta(limit int) []byte {
	d.a.mu.RLock()
	b, err := json.Marshal(d.a.meta)
	d.a.mu.RUnlock()
	if err != nil || len(b) > limit {
		return nil // Validate bounds the text, so this does not happen
	}
	return b
}
func (d metaDelegate) NotifyMsg(b []byte) {
	if len(b) < 2 {
		return
	}
	switch b[0] {
	case leaseMsgPrefix:
		d.a.receiveLeaseMsg(b[1:])
	case routedQueryPrefix, routedReportPrefix:
		d.a.receiveRouted(b[0], b[1:])
	}
}
func (metaDelegate) GetBroadcasts(int, int) [][]byte { return nil }
func (metaDelegate) LocalState(bool) []byte          { return nil }
func (metaDelegate) MergeRemoteState([]byte, bool)   {}

// setMeta changes this node's metadata and gossips it. One at a time:
// memberlist's UpdateNode is not safe to call concurrently (the race
// detector caught bootstrapLoop's and reconcileLoop's calls in
// aliveNode).
func (a *Agent) setMeta(f func(*nodeMeta)) {
	a.metaMu.Lock()
	defer a.metaMu.Unlock()
	a.mu.Lock()
	f(&a.meta)
	ml := a.ml
	a.mu.Unlock()
	if ml != nil {
		if err := ml.UpdateNode(2 * time.Second); err != nil {
			a.log.Warn("gossip metadata update", "error", err)
		}
	}
}

// eventDelegate tracks members (memberlist calls it under its own locks:
// no blocking, no memberlist calls).
type eventDelegate struct{ a *Agent }

func (d eventDelegate) NotifyJoin(n *memberlist.Node)   { d.a.trackMember(n, GossipAlive) }
func (d eventDelegate) NotifyUpdate(n *memberlist.Node) { d.a.trackMember(n, GossipAlive) }
func (d eventDelegate) NotifyLeave(n *memberlist.Node)  { d.a.trackMember(n, GossipDead) }

func (a *Agent) trackMember(n *memberlist.Node, state string) {
	var meta nodeMeta
	hasMeta := len(n.Meta) > 0 && json.Unmarshal(n.Meta, &meta) == nil && meta.Raft != ""
	a.mu.Lock()
	if hasMeta {
		if why := a.refuseMetaLocked(n.Name, meta); why != "" {
			hasMeta = false
			if ok, cnt := a.logLimit.allow("meta/" + n.Name + "/" + why); ok {
				a.log.Warn("gossip metadata refused", "member", n.Name, "gossip_addr", n.Address(),
					"claimed_name", meta.Name, "claimed_raft_addr", meta.Raft, "reason", why, "suppressed_since_last", cnt)
			}
		}
	}
	m := a.members[n.Name]
	if m == nil {
		m = &memberState{name: n.Name}
		a.members[n.Name] = m
	}
	m.addr = n.Address()
	if hasMeta {
		if m.meta.Raft != meta.Raft {
			m.verifiedAddr = ""
		}
		m.meta, m.hasMeta = meta, true
	}
	if state == GossipDead && m.hasMeta && m.meta.Leaving {
		state = GossipLeft
	}
	if m.state != state {
		if state == GossipAlive {
			m.verifiedAddr = "" // a new life: prove the name again
		}
		m.state, m.since = state, time.Now()
		a.log.Info("gossip member changed", "member", n.Name, "gossip_addr", m.addr, "gossip_state", state)
	}
	a.mu.Unlock()
	hint(a.bootHint)
	hint(a.reconHint)
	a.notify()
}

// probeTimeout bounds one probeClaim; probeRetry is how often a failed
// claim is probed again.
const (
	probeTimeout = 2 * time.Second
	probeRetry   = time.Second
)

// verifyClaim reports whether member name's claim to run Raft at addr
// holds: its Raft address answers with a certificate for its name (with
// TLS; in plain text: something listens there). A success is remembered
// for the member's current alive period; a failure is retried at most
// every probeRetry.
func (a *Agent) verifyClaim(name, addr string) error {
	a.mu.Lock()
	m := a.members[name]
	if m == nil {
		a.mu.Unlock()
		return errors.New("not a gossip member")
	}
	if m.verifiedAddr == addr {
		a.mu.Unlock()
		return nil
	}
	if time.Since(m.probed) < probeRetry {
		a.mu.Unlock()
		return errors.New("raft address did not answer with a certificate for the member's name (retrying)")
	}
	m.probed = time.Now()
	a.mu.Unlock()
	err := a.stream.probe(addr, name, probeTimeout)
	a.mu.Lock()
	if m := a.members[name]; err == nil && m != nil && m.meta.Raft == addr {
		m.verifiedAddr, m.probed = addr, time.Time{}
	}
	a.mu.Unlock()
	return err
}

// refuseMetaLocked says why a member's metadata claim is refused ("" =
// accepted): a node speaks only for itself, so its metadata must carry its
// own gossip name, and it may not claim the Raft address of another alive
// member or of this node. (Taking another voter's name or address in the
// Raft configuration is checked by the leader in reconcile, with a probe.)
func (a *Agent) refuseMetaLocked(name string, meta nodeMeta) string {
	if meta.Name != name {
		return "metadata names another node"
	}
	if name != a.cfg.NodeName && meta.Raft == a.raftAdvert {
		return "raft address of this node"
	}
	for _, o := range a.members {
		if o.name != name && o.state == GossipAlive && o.hasMeta && o.meta.Raft == meta.Raft {
			return "raft address of alive member " + o.name
		}
	}
	return ""
}
