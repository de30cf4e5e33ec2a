package topology

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
)

// hub owns the connections and the goroutines that check through them:
// one ROLE probe per Redis node and, per Sentinel, one command link and
// one subscription. A connection is shared by every watcher that names the
// same address with the same credentials and TLS settings; each result or
// event goes to all of them and each decides on its own. A lone Watcher
// has a hub of its own; a Group's watchers share one.
//
// Lock order: Watcher.mu, then hub.mu. The goroutines hold neither while
// they talk to the network, and never hold hub.mu while calling a watcher.
type hub struct {
	mu        sync.Mutex
	started   bool
	stopping  bool
	ctx       context.Context
	wg        sync.WaitGroup
	nodes     map[string]*nodeConn
	sentinels map[string]*sentinelConn
}

// nodeConn is the one ROLE probe of a Redis node.
type nodeConn struct {
	link    *link
	timeout time.Duration // ROLE read deadline (the first watcher's)
	running bool          // guarded by hub.mu
	subs    []nodeSub     // guarded by hub.mu
}

type nodeSub struct {
	w *Watcher
	n *nodeProbe
}

// sentinelConn is the command link and the subscription of one Sentinel.
type sentinelConn struct {
	link      *link
	timeout   time.Duration // read deadline (the first watcher's)
	pingEvery time.Duration // PING a quiet subscription (the first watcher's)
	running   bool          // guarded by hub.mu
	subs      []sentinelSub // guarded by hub.mu
}

type sentinelSub struct {
	w *Watcher
	s *sentinelWatch
}

func newHub() *hub {
	return &hub{nodes: map[string]*nodeConn{}, sentinels: map[string]*sentinelConn{}}
}

// connKey tells connections apart: the same address with other
// credentials or TLS settings gets a connection of its own.
func connKey(addr string, c credentials, t TLSConfig) string {
	return strings.Join([]string{addr, c.username, c.password, fmt.Sprintf("%+v", t)}, "\x00")
}

// addNode subscribes n of w to the probe of its address, creating and (if
// the hub runs) starting the probe. Called with w.mu held.
func (h *hub) addNode(w *Watcher, n *nodeProbe) *link {
	addr := n.state.Addr
	key := connKey(addr, w.nodeCreds, w.cfg.TLS)
	h.mu.Lock()
	defer h.mu.Unlock()
	c := h.nodes[key]
	if c == nil {
		c = &nodeConn{link: newLink(addr, w.nodeCreds, w.cfg.DialTimeout), timeout: w.checkTimeout}
		h.nodes[key] = c
	}
	c.subs = append(c.subs, nodeSub{w, n})
	if h.started && !h.stopping {
		if c.running {
			c.link.kick() // the new watcher gets an answer now, not at the next interval
		} else {
			h.startNodeLocked(c)
		}
	}
	return c.link
}

// addSentinel subscribes s of w to the Sentinel's connections. Called
// with w.mu held (or before w is shared).
func (h *hub) addSentinel(w *Watcher, s *sentinelWatch) *link {
	addr := s.state.Addr
	key := connKey(addr, w.sentinelCreds, w.cfg.TLS)
	h.mu.Lock()
	defer h.mu.Unlock()
	c := h.sentinels[key]
	if c == nil {
		c = &sentinelConn{
			link:      newLink(addr, w.sentinelCreds, w.cfg.DialTimeout),
			timeout:   w.sentinelTimeout(),
			pingEvery: max(w.cfg.CheckInterval, time.Second),
		}
		h.sentinels[key] = c
	}
	c.subs = append(c.subs, sentinelSub{w, s})
	if h.started && !h.stopping && !c.running {
		h.startSentinelLocked(c)
	}
	return c.link
}

// run starts every probe and Sentinel connection and blocks until ctx
// ends; it then closes every connection and waits for its goroutines.
func (h *hub) run(ctx context.Context) error {
	h.mu.Lock()
	if h.started {
		h.mu.Unlock()
		return errors.New("topology: watcher already run")
	}
	h.started = true
	h.ctx = ctx
	for _, c := range h.sentinels {
		h.startSentinelLocked(c)
	}
	for _, c := range h.nodes {
		h.startNodeLocked(c)
	}
	h.mu.Unlock()

	<-ctx.Done()
	h.mu.Lock()
	h.stopping = true
	h.mu.Unlock()
	h.wg.Wait()
	return nil
}

func (h *hub) startNodeLocked(c *nodeConn) {
	c.running = true
	ctx := h.ctx
	h.wg.Add(1)
	go func() { defer h.wg.Done(); h.runNode(ctx, c) }()
}

func (h *hub) startSentinelLocked(c *sentinelConn) {
	c.running = true
	ctx := h.ctx
	h.wg.Add(2)
	go func() { defer h.wg.Done(); h.runSentinelPoll(ctx, c) }()
	go func() { defer h.wg.Done(); h.runSentinelSub(ctx, c) }()
}

func (h *hub) nodeSubs(c *nodeConn) []nodeSub {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]nodeSub(nil), c.subs...)
}

func (h *hub) sentinelSubs(c *sentinelConn) []sentinelSub {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]sentinelSub(nil), c.subs...)
}

// runNode polls one node's ROLE until ctx ends and hands every answer to
// each watcher that follows the node. The next check comes after the
// shortest wait any of them asks for (a failover candidate: 5 ms).
func (h *hub) runNode(ctx context.Context, c *nodeConn) {
	stop := context.AfterFunc(ctx, c.link.kick)
	defer stop()
	defer c.link.drop()
	for ctx.Err() == nil {
		start := time.Now()
		v, err := c.link.do(ctx, c.timeout, "ROLE")
		var ri roleInfo
		if err == nil {
			ri, err = parseRole(v)
		}
		if ctx.Err() != nil {
			return
		}
		dur := time.Since(start)
		next := time.Duration(-1)
		for _, s := range h.nodeSubs(c) {
			if d := s.w.recordNode(s.n, ri, err, start, dur); next < 0 || d < next {
				next = d
			}
		}
		c.link.wait(ctx, next)
	}
}

// runSentinelPoll polls SENTINEL MASTER and SENTINEL REPLICAS for each
// watcher's master name in turn, on the one command link, until ctx ends.
// A connection fault is not retried for the remaining names in that
// round: they get the same error.
func (h *hub) runSentinelPoll(ctx context.Context, c *sentinelConn) {
	stop := context.AfterFunc(ctx, c.link.kick)
	defer stop()
	defer c.link.drop()
	for ctx.Err() == nil {
		next := time.Duration(-1)
		var connErr error
		for _, s := range h.sentinelSubs(c) {
			rep, err := sentinelReport{}, connErr
			if err == nil {
				rep, err = s.w.pollSentinel(ctx, s.s)
			}
			if ctx.Err() != nil {
				return
			}
			var re redisError
			if err != nil && !errors.As(err, &re) {
				connErr = err
			}
			if d := s.w.recordSentinel(s.s, rep, err); next < 0 || d < next {
				next = d
			}
		}
		c.link.wait(ctx, next)
	}
}

// runSentinelSub keeps one subscription to the Sentinel's events until
// ctx ends, reconnecting with backoff. Every watcher sees every event and
// keeps those of its master name.
func (h *hub) runSentinelSub(ctx context.Context, c *sentinelConn) {
	failures := 0
	for ctx.Err() == nil {
		err := h.subscribeOnce(ctx, c)
		if ctx.Err() != nil {
			return
		}
		failures++
		if err != nil {
			for _, s := range h.sentinelSubs(c) {
				s.w.subscriptionLost(s.s, err)
			}
		}
		t := time.NewTimer(backoff(failures, 2*time.Second))
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
	}
}

// subscribeOnce subscribes and hands out events until the connection
// fails. It pings the Sentinel when the channel is quiet, so a hung
// Sentinel is noticed.
func (h *hub) subscribeOnce(ctx context.Context, sc *sentinelConn) error {
	addr, to := sc.link.addr, sc.timeout
	c, err := dialRESP(ctx, addr, sc.link.creds, sc.link.dialTimeout)
	if err != nil {
		return err
	}
	defer c.close()
	stop := context.AfterFunc(ctx, c.close)
	defer stop()
	if err := c.send(to, append([]string{"SUBSCRIBE"}, sentinelChannels...)...); err != nil {
		return err
	}
	lastData := time.Now()
	pinged := false
	for {
		_ = c.nc.SetReadDeadline(time.Now().Add(sc.pingEvery))
		err := c.waitReadable()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, errIdle) {
			if pinged && time.Since(lastData) > 2*sc.pingEvery+to {
				return fmt.Errorf("no answer to PING from %s", addr)
			}
			if err := c.send(to, "PING"); err != nil {
				return err
			}
			pinged = true
			continue
		}
		if err != nil {
			return fmt.Errorf("read events from %s: %w", addr, err)
		}
		_ = c.nc.SetReadDeadline(time.Now().Add(to))
		v, err := readValue(c.br)
		if err != nil {
			return fmt.Errorf("read events from %s: %w", addr, err)
		}
		lastData, pinged = time.Now(), false
		arr, _ := v.([]any)
		if re, ok := v.(redisError); ok {
			if isAuthReply(string(re)) {
				return fmt.Errorf("%w on %s: %s", ErrAuth, addr, re)
			}
			return fmt.Errorf("subscribe on %s: %s", addr, re)
		}
		if len(arr) >= 3 && asString(arr[0]) == "message" {
			for _, s := range h.sentinelSubs(sc) {
				s.w.handleEvent(s.s, asString(arr[1]), asString(arr[2]))
			}
		} else if len(arr) >= 3 && asString(arr[0]) == "subscribe" && asString(arr[1]) == sentinelChannels[0] {
			for _, s := range h.sentinelSubs(sc) {
				s.w.subscribed(s.s)
			}
		}
	}
}
