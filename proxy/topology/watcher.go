package topology

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

const (
	// fastProbeEvery is how often a failover candidate's ROLE is polled.
	fastProbeEvery = 5 * time.Millisecond
	// fastProbeFor bounds how long a candidate is polled that fast, and
	// how long it is followed without being confirmed.
	fastProbeFor = 10 * time.Second
	// maxCheckTimeout caps the read deadline of a ROLE check, so that a
	// dead master is noticed quickly even with a long check_interval.
	maxCheckTimeout = 250 * time.Millisecond
	// minCheckTimeout keeps the deadline sane on a loaded box when
	// check_interval is very short.
	minCheckTimeout = 100 * time.Millisecond
)

// ErrNoSentinel is returned by Failover when no Sentinel is configured.
var ErrNoSentinel = errors.New("no sentinel configured")

// Watcher follows Sentinel and probes Redis nodes; see Observation.
type Watcher struct {
	cfg     Config
	log     *slog.Logger
	changes chan struct{}

	nodeCreds     credentials
	sentinelCreds credentials
	checkTimeout  time.Duration

	hub    *hub // the connections; shared with the other watchers of a Group
	ownHub bool // a lone watcher: Run runs the hub

	mu        sync.Mutex
	nodes     map[string]*nodeProbe
	sentinels []*sentinelWatch
	dec       decision
	cand      candidate
	candUntil time.Time
	updated   time.Time
	signature string
}

// New validates cfg and builds a watcher. It starts nothing; see Run.
func New(cfg Config, logger *slog.Logger) (*Watcher, error) {
	w, err := newWatcher(cfg, logger, newHub())
	if err != nil {
		return nil, err
	}
	w.ownHub = true
	return w, nil
}

// newWatcher builds a watcher whose connections live in h.
func newWatcher(cfg Config, logger *slog.Logger, h *hub) (*Watcher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("topology config: %w", err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cfg.Sentinels = append([]string(nil), cfg.Sentinels...)
	cfg.Nodes = append([]string(nil), cfg.Nodes...)
	ct := cfg.CheckInterval
	if ct > maxCheckTimeout {
		ct = maxCheckTimeout
	}
	if ct < minCheckTimeout {
		ct = minCheckTimeout
	}
	clientTLS := cfg.ClientTLS
	if clientTLS == nil {
		var err error
		if clientTLS, err = cfg.TLS.NewClientTLS(); err != nil {
			return nil, err
		}
	}
	w := &Watcher{
		cfg:           cfg,
		log:           logger.With("component", "topology"),
		changes:       make(chan struct{}, 1),
		nodeCreds:     credentials{username: cfg.Username, password: cfg.Password, tls: clientTLS},
		sentinelCreds: credentials{username: cfg.SentinelUsername, password: cfg.SentinelPassword, tls: clientTLS},
		checkTimeout:  ct,
		hub:           h,
		nodes:         map[string]*nodeProbe{},
	}
	for _, addr := range cfg.Sentinels {
		s := &sentinelWatch{state: SentinelState{Addr: addr}}
		s.link = h.addSentinel(w, s)
		w.sentinels = append(w.sentinels, s)
	}
	for _, addr := range cfg.Nodes {
		w.addNodeLocked(addr)
	}
	w.dec.Reason = "starting"
	w.updated = time.Now()
	return w, nil
}

// Changes returns a hint channel (capacity 1): it receives, without
// blocking the watcher, after every change of the master, the epoch, a
// node's or a Sentinel's state. Re-read Observation on every hint.
func (w *Watcher) Changes() <-chan struct{} { return w.changes }

// Run starts the Sentinel and node checks and blocks until ctx ends. It
// then closes every connection and waits for its goroutines. It returns
// nil after ctx ends. A watcher of a Group is run by Group.Run instead.
func (w *Watcher) Run(ctx context.Context) error {
	if !w.ownHub {
		return errors.New("topology: watcher of a group: run the group")
	}
	// The first results update the observation; until then its Reason
	// says "starting".
	return w.hub.run(ctx)
}

// Observation returns the current observation. The slices are copies.
func (w *Watcher) Observation() Observation {
	w.mu.Lock()
	defer w.mu.Unlock()
	return Observation{
		Master:    w.dec.Master,
		Epoch:     w.dec.Epoch,
		Reason:    w.dec.Reason,
		Nodes:     w.nodeStatesLocked(),
		Sentinels: w.sentinelStatesLocked(),
		Failover:  Failover(w.cand),
		Time:      w.updated,
	}
}

func (w *Watcher) nodeStatesLocked() []NodeState {
	out := make([]NodeState, 0, len(w.nodes))
	for _, n := range w.nodes {
		out = append(out, n.state)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Addr < out[j].Addr })
	byAddr := make(map[string]int, len(out))
	for i, n := range out {
		byAddr[n.Addr] = i
	}
	for i, n := range out {
		out[i].LagBytes = 0
		if n.Up && n.Role == RoleReplica {
			if j, ok := byAddr[n.MasterAddr]; ok && out[j].Up && out[j].Role == RoleMaster && out[j].Offset > n.Offset {
				out[i].LagBytes = out[j].Offset - n.Offset
			}
		}
	}
	return out
}

func (w *Watcher) sentinelStatesLocked() []SentinelState {
	out := make([]SentinelState, len(w.sentinels))
	for i, s := range w.sentinels {
		out[i] = s.state
	}
	return out
}

// addNodeLocked registers a node to probe (once per watcher; the hub
// probes each address once for all the watchers that know it) and starts
// its probe if the hub runs.
func (w *Watcher) addNodeLocked(addr string) *nodeProbe {
	if n, ok := w.nodes[addr]; ok {
		return n
	}
	n := &nodeProbe{state: NodeState{Addr: addr}}
	w.nodes[addr] = n
	n.link = w.hub.addNode(w, n)
	return n
}

// Recheck makes the probe of addr check its ROLE at once, if addr is a
// known node (unknown addresses are not probed: see Contradicts). A
// caller whose view disagrees with the observation uses it to get a fresh
// answer instead of waiting for the next check_interval.
func (w *Watcher) Recheck(addr string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.kickNodeLocked(addr)
}

// kickNodeLocked makes the node's probe check at once.
func (w *Watcher) kickNodeLocked(addr string) {
	if n, ok := w.nodes[addr]; ok {
		n.link.kick()
	}
}

// updateLocked applies the decision rule to the current state, logs a
// master change and sends a change hint when something that matters moved.
func (w *Watcher) updateLocked() {
	now := time.Now()
	if w.cand.Addr != "" && now.After(w.candUntil) {
		w.log.Warn("failover candidate not confirmed in time", "addr", w.cand.Addr, "epoch", w.cand.Epoch)
		w.cand = candidate{}
	}
	nodes := make(map[string]NodeState, len(w.nodes))
	for addr, n := range w.nodes {
		nodes[addr] = n.state
	}
	in := decideInput{
		UseSentinel: len(w.sentinels) > 0,
		Sentinels:   w.sentinelStatesLocked(),
		Nodes:       nodes,
		Candidate:   w.cand,
		Prev:        w.dec,
	}
	d := decide(in)
	if d.Master != w.dec.Master || d.Epoch != w.dec.Epoch {
		w.log.Info("master changed", "master_addr", d.Master, "epoch", d.Epoch, "reason", d.Reason, "previous", w.dec.Master)
	}
	w.dec = d
	if w.cand.Addr != "" && d.Epoch >= w.cand.Epoch {
		// Confirmed, or overtaken by a newer epoch: nothing to follow.
		w.cand = candidate{}
	}
	w.updated = now

	sig := w.signatureLocked()
	if sig != w.signature {
		w.signature = sig
		select {
		case w.changes <- struct{}{}:
		default:
		}
	}
}

// SetMaxReplicaLag changes redis.max_replica_lag while the watcher runs
// (a reload): whether a replica counts as healthy, and so whether a
// change of its lag is worth a hint, follows the new value.
func (w *Watcher) SetMaxReplicaLag(lag int64) {
	w.mu.Lock()
	w.cfg.MaxReplicaLag = lag
	w.mu.Unlock()
}

// signatureLocked summarises what consumers route on; a change of it is
// worth a hint. Offsets and check times are left out on purpose.
func (w *Watcher) signatureLocked() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s|%d|%s|%s@%d", w.dec.Master, w.dec.Epoch, w.dec.Reason, w.cand.Addr, w.cand.Epoch)
	for _, n := range w.nodeStatesLocked() {
		fmt.Fprintf(&b, "|%s,%t,%s,%s,%t,%t,%t", n.Addr, n.Up, n.Role, n.MasterAddr, n.LinkUp, n.Stalled, n.HealthyReplica(w.cfg.MaxReplicaLag))
	}
	for _, s := range w.sentinels {
		fmt.Fprintf(&b, "|%s,%t,%s,%d", s.state.Addr, s.state.Reachable, s.state.Master, s.state.Epoch)
	}
	return b.String()
}

// Failover asks a reachable Sentinel to fail the master over (SENTINEL
// FAILOVER <master_name>), trying the Sentinels that answered the last
// poll first. A Redis error from a Sentinel (e.g. INPROG, NOGOODSLAVE) is
// returned as is; connection faults move on to the next Sentinel.
func (w *Watcher) Failover(ctx context.Context) error {
	if len(w.cfg.Sentinels) == 0 {
		return fmt.Errorf("failover %s: %w", w.cfg.MasterName, ErrNoSentinel)
	}
	w.mu.Lock()
	var order []string
	for _, s := range w.sentinels {
		if s.state.Reachable {
			order = append(order, s.state.Addr)
		}
	}
	for _, s := range w.sentinels {
		if !s.state.Reachable {
			order = append(order, s.state.Addr)
		}
	}
	w.mu.Unlock()

	var errs []error
	for _, addr := range order {
		if ctx.Err() != nil {
			break
		}
		timeout := 2 * time.Second
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < timeout {
			timeout = max(time.Until(dl), time.Millisecond)
		}
		c, err := dialRESP(ctx, addr, w.sentinelCreds, min(w.cfg.DialTimeout, timeout))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		_, err = c.do(timeout, "SENTINEL", "FAILOVER", w.cfg.MasterName)
		c.close()
		if err == nil {
			w.log.Info("failover requested", "sentinel", addr, "master_name", w.cfg.MasterName)
			return nil
		}
		var re redisError
		if errors.As(err, &re) {
			return fmt.Errorf("sentinel %s: failover %s: %w", addr, w.cfg.MasterName, err)
		}
		errs = append(errs, err)
	}
	if ctx.Err() != nil {
		errs = append(errs, ctx.Err())
	}
	return fmt.Errorf("failover %s: no sentinel answered: %w", w.cfg.MasterName, errors.Join(errs...))
}

// joinHostPort builds "host:port" from reply fields.
func joinHostPort(host string, port any) string {
	p := asString(port)
	if host == "" || p == "" {
		return ""
	}
	if _, err := strconv.Atoi(p); err != nil {
		return ""
	}
	return net.JoinHostPort(host, p)
}
