package topology

import (
	"context"
	"errors"
	"sync"
	"time"
)

// link is a persistent, reconnecting command connection to one address,
// used by one polling goroutine. Other goroutines may kick it: the poller
// wakes up from its wait at once and checks again.
type link struct {
	addr        string
	creds       credentials
	dialTimeout time.Duration
	kickCh      chan struct{}

	mu sync.Mutex // guards c for kick; the poller owns c otherwise
	c  *respConn
}

func newLink(addr string, creds credentials, dialTimeout time.Duration) *link {
	return &link{addr: addr, creds: creds, dialTimeout: dialTimeout, kickCh: make(chan struct{}, 1)}
}

// kick wakes the poller. The send comes before the interrupt, and wait sets
// its deadline before it looks at kickCh, so a kick is never lost.
func (l *link) kick() {
	select {
	case l.kickCh <- struct{}{}:
	default:
	}
	l.mu.Lock()
	if l.c != nil {
		l.c.interrupt()
	}
	l.mu.Unlock()
}

// do runs one command, dialling first if needed. If a command on an
// existing connection fails (the peer restarted, the connection broke), it
// redials once and retries, so a stale connection alone does not count as
// a failed check.
func (l *link) do(ctx context.Context, timeout time.Duration, args ...string) (any, error) {
	l.mu.Lock()
	c := l.c
	l.mu.Unlock()
	if c != nil {
		v, err := c.do(timeout, args...)
		var re redisError
		if err == nil || errors.As(err, &re) {
			return v, err
		}
		l.drop()
		if errors.Is(err, ErrAuth) || ctx.Err() != nil {
			return nil, err
		}
	}
	c, err := dialRESP(ctx, l.addr, l.creds, l.dialTimeout)
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.c = c
	l.mu.Unlock()
	v, err := c.do(timeout, args...)
	var re redisError
	if err != nil && !errors.As(err, &re) {
		l.drop()
	}
	return v, err
}

// drop closes the current connection, if any.
func (l *link) drop() {
	l.mu.Lock()
	c := l.c
	l.c = nil
	l.mu.Unlock()
	if c != nil {
		c.close()
	}
}

// wait returns after d, on a kick, when ctx ends, or as soon as the
// connection breaks (the peer closed it: a killed node is noticed at once,
// not at the next poll).
func (l *link) wait(ctx context.Context, d time.Duration) {
	l.mu.Lock()
	c := l.c
	l.mu.Unlock()
	if c == nil {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-ctx.Done():
		case <-l.kickCh:
		case <-t.C:
		}
		return
	}
	until := time.Now().Add(d)
	for {
		_ = c.nc.SetReadDeadline(until)
		select {
		case <-l.kickCh:
			return
		default:
		}
		if ctx.Err() != nil {
			return
		}
		err := c.waitReadable()
		switch {
		case err == nil:
			// A command connection never gets unsolicited data: the
			// stream is out of step, start again.
			l.drop()
			return
		case errors.Is(err, errIdle):
			if !time.Now().Before(until) {
				return
			}
			// Interrupted by a kick (or ctx): loop to consume it.
		default:
			l.drop()
			return
		}
	}
}

// backoff is the pause after n consecutive failures: 50ms doubling, at
// most max.
func backoff(n int, max time.Duration) time.Duration {
	d := 50 * time.Millisecond
	for i := 1; i < n && d < max; i++ {
		d *= 2
	}
	if d > max {
		d = max
	}
	return d
}

// faultLog rate-limits Warn logs of a retried fault: the first failure
// after a success is logged, and then a fault of the same class (auth,
// busy, protocol or other; error texts vary with local ports) only once
// per faultLogEvery.
type faultLog struct {
	last string
	at   time.Time
}

const faultLogEvery = 30 * time.Second

func (f *faultLog) should(err error, now time.Time) bool {
	class := "other"
	switch {
	case errors.Is(err, ErrAuth):
		class = "auth"
	case isBusy(err):
		class = "busy"
	case errors.Is(err, errProtocol):
		class = "protocol"
	}
	if class == f.last && now.Sub(f.at) < faultLogEvery {
		return false
	}
	f.last, f.at = class, now
	return true
}

func (f *faultLog) reset() { f.last = "" }
