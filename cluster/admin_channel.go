package cluster

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/hashicorp/raft"
)

// The admin channel carries admin actions between nodes over the Raft
// port: same listener, same mutual TLS, told apart from Raft by ALPN
// (adminALPN; Raft's own dialer offers no protocol). A follower forwards
// the actions that need the leader (OnLeader), and a key rotation is fanned
// out to every member (keys.go) without ever going through the Raft log.
// One request and one answer per connection, both one JSON line: admin
// actions are rare, and a fresh handshake proves the peer each time.
// Without TLS (cluster.insecure) there is no channel: nothing would
// authenticate it.

// adminALPN is the ALPN protocol name of the admin channel.
const adminALPN = "redhaven-admin/1"

// Bounds of the admin channel.
const (
	maxAdminRequests = 16       // served at once; more are refused as busy
	maxAdminLine     = 64 << 10 // bytes of one request or answer
	maxAdminTimeout  = 60 * time.Second
	// adminAnswerMargin: the serving node gives up this much before the
	// caller does, so that the caller reads an answer, not a timeout.
	adminAnswerMargin = 250 * time.Millisecond
)

// Errors of forwarded actions (see also ErrNotLeader and the FSM's).
var (
	// ErrNoLeader: no leader is known or reachable (an election, or no
	// quorum): try again in a moment.
	ErrNoLeader = errors.New("cluster: no raft leader")
	// ErrLeaderTimeout: the leader took the request but did not answer in
	// time; the outcome is unknown.
	ErrLeaderTimeout = errors.New("cluster: the leader did not answer in time")
	// ErrNoAdminChannel: this node runs without cluster TLS
	// (cluster.insecure), so it cannot forward.
	ErrNoAdminChannel = errors.New("cluster: no admin channel without cluster TLS")
	// ErrBadRequest: the request itself is wrong (missing or bad value).
	ErrBadRequest = errors.New("cluster: bad request")
	// ErrUnknownMember: no member or Raft server of that name.
	ErrUnknownMember = errors.New("cluster: unknown member")
	// ErrMemberAlive: the member is alive (or is this node), so it cannot
	// be removed now.
	ErrMemberAlive = errors.New("cluster: member is alive")
	// ErrTransferFailed: raft could not hand leadership over (the target
	// did not catch up or answer); the leader stays.
	ErrTransferFailed = errors.New("cluster: leadership transfer failed")
)

// wireErrors names the errors that cross the admin channel, so that the
// caller's errors.Is sees the same error as on the node that acted.
var wireErrors = []struct {
	name string
	err  error
}{
	{"not_leader", ErrNotLeader}, {"no_leader", ErrNoLeader}, {"leader_timeout", ErrLeaderTimeout},
	{"stale_epoch", ErrStaleEpoch}, {"unknown_failover", ErrUnknownFailover},
	{"failover_pending", ErrFailoverPending}, {"failover_done", ErrFailoverDone},
	{"not_running", ErrNotRunning}, {"quorum", ErrQuorum}, {"route_changed", ErrRouteChanged},
	{"bad_request", ErrBadRequest}, {"unknown_member", ErrUnknownMember}, {"member_alive", ErrMemberAlive},
	{"transfer_failed", ErrTransferFailed}, {"unknown_service", ErrUnknownService},
	{"not_keyed", ErrNotKeyed}, {"key_not_installed", ErrKeyNotInstalled}, {"primary_key", ErrPrimaryKey},
	{"deadline", context.DeadlineExceeded},
}

func wireName(err error) string {
	for _, w := range wireErrors {
		if errors.Is(err, w.err) {
			return w.name
		}
	}
	return ""
}

// remoteError is an error that another node answered.
type remoteError struct {
	kind error // one of wireErrors, or nil
	msg  string
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.kind }

func decodeWireError(name, msg string) error {
	for _, w := range wireErrors {
		if w.name == name {
			return &remoteError{w.err, msg}
		}
	}
	return &remoteError{nil, msg}
}

// Leader ops (LeaderOp.Kind).
const (
	OpFailover           = "failover"
	OpBackendState       = "backend_state"
	OpTransferLeadership = "transfer_leadership"
	OpRemoveMember       = "remove_member"
	OpResetRoute         = "reset_route"
)

// LeaderOp is an admin action that only the Raft leader can carry out.
type LeaderOp struct {
	Kind string `json:"kind"` // Op* constants
	// Service names the service of OpFailover, OpBackendState and
	// OpResetRoute; "" is the leader's default service (also what a
	// follower of a single-service release sends).
	Service string         `json:"service,omitempty"`
	Addr    string         `json:"addr,omitempty"`   // OpBackendState: the Redis backend
	State   AdminState     `json:"state,omitempty"`  // OpBackendState
	Node    string         `json:"node,omitempty"`   // OpTransferLeadership ("" any voter), OpRemoveMember
	Reason  string         `json:"reason,omitempty"` // OpFailover, OpResetRoute
	Expect  *RouteDecision `json:"expect,omitempty"` // OpResetRoute: only while this route is committed
}

// Acted says who carried out a LeaderOp.
type Acted struct {
	Node      string `json:"node"`      // the leader that carried it out
	Forwarded bool   `json:"forwarded"` // this node forwarded it over the admin channel
	ID        uint64 `json:"id"`        // OpFailover: the request's ID
}

// adminRequest is one request on the admin channel.
type adminRequest struct {
	From      string    `json:"from"`
	TimeoutMS int64     `json:"timeout_ms"`
	Leader    *LeaderOp `json:"leader,omitempty"`
	Key       *keyOp    `json:"key,omitempty"`
}

// adminAnswer is the answer to one adminRequest.
type adminAnswer struct {
	Node  string   `json:"node"` // who answered
	ID    uint64   `json:"id,omitempty"`
	Keys  *KeyRing `json:"keys,omitempty"`
	Error string   `json:"error,omitempty"`
	Kind  string   `json:"kind,omitempty"` // wireErrors name of Error
}

// leaderWait is how long OnLeader waits for a leader to be known (an
// election in progress) before answering ErrNoLeader; forwardAttempts
// bounds the retries when leadership moves under a request.
const (
	leaderWait      = 3 * time.Second
	forwardAttempts = 3
)

// OnLeader carries out op on the Raft leader: here when this node leads,
// else forwarded over the admin channel. Errors wrap the same sentinels on
// every node (ErrNotLeader, ErrQuorum, ErrUnknownMember, ...), plus
// ErrNoLeader (none known or reachable), ErrLeaderTimeout (no answer
// within ctx) and ErrNoAdminChannel (cluster.insecure).
func (a *Agent) OnLeader(ctx context.Context, op LeaderOp) (Acted, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultApplyTimeout+time.Second)
		defer cancel()
	}
	var err error
	for attempt := 0; attempt < forwardAttempts; attempt++ {
		r := a.raftNode()
		if r == nil {
			return Acted{}, ErrNotRunning
		}
		if r.State() == raft.Leader {
			id, err := a.execLeaderOp(ctx, op, a.cfg.NodeName)
			if err == nil || !errors.Is(err, ErrNotLeader) {
				return Acted{Node: a.cfg.NodeName, ID: id}, err
			}
			continue // lost leadership meanwhile: forward
		}
		name, addr := a.waitLeader(ctx)
		if name == "" {
			return Acted{}, fmt.Errorf("%w known to %s (election in progress or no quorum): try again", ErrNoLeader, a.cfg.NodeName)
		}
		if name == a.cfg.NodeName {
			continue
		}
		var ans adminAnswer
		ans, err = a.ask(ctx, name, addr, adminRequest{Leader: &op})
		if err != nil {
			return Acted{}, err
		}
		if ans.Error == "" {
			return Acted{Node: ans.Node, Forwarded: true, ID: ans.ID}, nil
		}
		err = decodeWireError(ans.Kind, ans.Error)
		if !errors.Is(err, ErrNotLeader) {
			return Acted{Node: ans.Node}, err
		}
		// leadership moved between our view and the request: look again
		select {
		case <-ctx.Done():
			return Acted{}, fmt.Errorf("%w: %v", ErrLeaderTimeout, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	return Acted{}, fmt.Errorf("%w: leadership kept moving (%v)", ErrNoLeader, err)
}

// waitLeader returns the leader this node follows, waiting up to
// leaderWait (bounded by ctx) for one to be known.
func (a *Agent) waitLeader(ctx context.Context) (name, addr string) {
	deadline := time.Now().Add(leaderWait)
	for {
		if name, addr = a.Leader(); name != "" || time.Now().After(deadline) {
			return name, addr
		}
		select {
		case <-ctx.Done():
			return "", ""
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// execLeaderOp carries out op on this node, the leader; from names the
// node the request came from.
func (a *Agent) execLeaderOp(ctx context.Context, op LeaderOp, from string) (uint64, error) {
	switch op.Kind {
	case OpFailover:
		reason := op.Reason
		if reason == "" {
			reason = "requested on " + from
		}
		return a.RequestFailover(ctx, op.Service, reason)
	case OpBackendState:
		return 0, a.SetBackendAdmin(ctx, op.Service, op.Addr, op.State)
	case OpTransferLeadership:
		return 0, a.TransferLeadership(ctx, op.Node)
	case OpRemoveMember:
		return 0, a.RemoveMember(ctx, op.Node)
	case OpResetRoute:
		reason := op.Reason
		if reason == "" {
			reason = "reset by operator on " + from
		}
		return 0, a.ResetRoute(ctx, op.Service, op.Expect, reason)
	}
	return 0, fmt.Errorf("%w: unknown leader op %q", ErrBadRequest, op.Kind)
}

// ask sends one request to node name at its Raft address and reads the
// answer. Errors: ErrNoLeader-wrapped when the node cannot be reached,
// ErrLeaderTimeout when it took the request but did not answer in time.
func (a *Agent) ask(ctx context.Context, name, addr string, req adminRequest) (adminAnswer, error) {
	dl, ok := ctx.Deadline()
	if !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultApplyTimeout)
		defer cancel()
		dl, _ = ctx.Deadline()
	}
	req.From = a.cfg.NodeName
	req.TimeoutMS = max(time.Until(dl), time.Millisecond).Milliseconds()
	c, err := a.stream.dialAdmin(ctx, addr, name)
	if err != nil {
		if errors.Is(err, ErrNoAdminChannel) {
			return adminAnswer{}, fmt.Errorf("%w: cannot forward to %s; run the action on it", err, name)
		}
		if ctx.Err() != nil {
			return adminAnswer{}, fmt.Errorf("%w: %s at %s: %v", ErrLeaderTimeout, name, addr, err)
		}
		return adminAnswer{}, fmt.Errorf("%w: %s at %s does not answer on the admin channel: %v", ErrNoLeader, name, addr, err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Now()) })
	defer stop()
	_ = c.SetDeadline(dl)
	b, _ := json.Marshal(req)
	if _, err := c.Write(append(b, '\n')); err != nil {
		return adminAnswer{}, fmt.Errorf("%w: send to %s at %s: %v", ErrNoLeader, name, addr, err)
	}
	line, err := bufio.NewReaderSize(&limitedReader{c, maxAdminLine}, 4096).ReadBytes('\n')
	if err != nil {
		var ne net.Error
		if ctx.Err() != nil || errors.As(err, &ne) && ne.Timeout() {
			return adminAnswer{}, fmt.Errorf("%w: %s at %s took the request, outcome unknown", ErrLeaderTimeout, name, addr)
		}
		return adminAnswer{}, fmt.Errorf("%w: %s at %s closed the admin channel without an answer: %v", ErrNoLeader, name, addr, err)
	}
	var ans adminAnswer
	if err := json.Unmarshal(line, &ans); err != nil {
		return adminAnswer{}, fmt.Errorf("bad answer from %s on the admin channel: %w", name, err)
	}
	return ans, nil
}

// limitedReader fails once more than n bytes were read (an answer line is
// bounded; a peer that sends more is broken).
type limitedReader struct {
	c net.Conn
	n int
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, errors.New("admin channel: line too long")
	}
	if len(p) > l.n {
		p = p[:l.n]
	}
	n, err := l.c.Read(p)
	l.n -= n
	return n, err
}

// serveAdminConn serves one request on an accepted admin connection (the
// peer's certificate was verified by the handshake).
func (a *Agent) serveAdminConn(ctx context.Context, c net.Conn) {
	_ = c.SetDeadline(time.Now().Add(handshakeTimeout))
	line, err := bufio.NewReaderSize(&limitedReader{c, maxAdminLine}, 4096).ReadBytes('\n')
	if err != nil {
		return
	}
	var req adminRequest
	ans := adminAnswer{Node: a.cfg.NodeName}
	var id uint64
	if err = json.Unmarshal(line, &req); err != nil {
		err = fmt.Errorf("%w: admin request: %v", ErrBadRequest, err)
	} else {
		timeout := min(time.Duration(req.TimeoutMS)*time.Millisecond, maxAdminTimeout)
		if timeout <= 0 {
			timeout = defaultApplyTimeout
		}
		ctx, cancel := context.WithTimeout(ctx, max(timeout-adminAnswerMargin, time.Millisecond))
		_ = c.SetDeadline(time.Now().Add(timeout))
		switch {
		case req.Leader != nil:
			id, err = a.execLeaderOp(ctx, *req.Leader, req.From)
			a.log.Info("forwarded admin action", "from", req.From, "op", req.Leader.Kind, "service", req.Leader.Service, "target_node", req.Leader.Node,
				"backend_addr", req.Leader.Addr, "error", errString(err))
		case req.Key != nil:
			var kr KeyRing
			kr, err = a.keyOpLocal(*req.Key)
			ans.Keys = &kr
			a.log.Info("cluster key operation from peer", "from", req.From, "op", req.Key.Op, "error", errString(err))
		default:
			err = fmt.Errorf("%w: empty admin request", ErrBadRequest)
		}
		cancel()
	}
	ans.ID = id
	if err != nil {
		ans.Error, ans.Kind = err.Error(), wireName(err)
	}
	b, _ := json.Marshal(ans)
	_, _ = c.Write(append(b, '\n'))
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// serveAdmin runs one admin exchange on an accepted connection, at most
// maxAdminRequests at once, cancelled when the layer closes.
func (s *streamLayer) serveAdmin(c *tls.Conn) {
	defer c.Close()
	select {
	case s.adminSem <- struct{}{}:
		defer func() { <-s.adminSem }()
	default:
		s.reject(c.RemoteAddr(), RejectBusy, errors.New("too many admin requests in progress"))
		return
	}
	if s.admin == nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { // ends with this exchange at the latest
		select {
		case <-s.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	s.admin(ctx, c)
}

// dialAdmin opens an admin-channel connection to the node name at addr
// (its certificate must name it).
func (s *streamLayer) dialAdmin(ctx context.Context, addr, name string) (net.Conn, error) {
	if s.isolated.Load() {
		return nil, errIsolated
	}
	if s.tls == nil {
		return nil, ErrNoAdminChannel
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	tc := s.track(c)
	tc.admin.Store(true)
	cfg := s.tls.clientConfig(name)
	cfg.NextProtos = []string{adminALPN}
	tlsConn := tls.Client(tc, cfg)
	timeout := handshakeTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(dl))
	}
	if err := s.handshake(tlsConn, timeout); err != nil {
		return nil, fmt.Errorf("tls handshake: %w", err)
	}
	if p := tlsConn.ConnectionState().NegotiatedProtocol; p != adminALPN {
		_ = tlsConn.Close()
		return nil, fmt.Errorf("%s does not serve the admin channel (an older redhaven?)", addr)
	}
	return tlsConn, nil
}
