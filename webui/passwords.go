package webui

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Bounds of the password checker. bcrypt costs tens of milliseconds of CPU
// by design; the agent often runs on one Go thread next to the proxy, so
// every bcrypt the network can trigger is a pause for the clients.
const (
	credentialTTL   = 5 * time.Minute  // a verified credential skips bcrypt this long
	maxCredentials  = 1024             // cached credentials; beyond, the expired ones go, then all
	failBurst       = 5                // wrong passwords a client address may send at once...
	failEvery       = 10 * time.Second // ...then one per this interval
	globalFailBurst = 10               // the same for all addresses together
	globalFailEvery = 10 * time.Second
	maxBuckets      = 4096 // client addresses tracked; beyond, the others share one bucket
	maxWaiters      = 4    // requests waiting for the one bcrypt slot; beyond, 503
	bcryptWait      = 2 * time.Second
)

// authResult is the outcome of checking a request's credentials.
type authResult int

const (
	authOK      authResult = iota
	authBad                // no or wrong credentials: 401
	authLimited            // too many wrong passwords from this address: 429
	authBusy               // the bcrypt slot stayed busy: 503
)

func (r authResult) String() string {
	switch r {
	case authOK:
		return "ok"
	case authLimited:
		return "limited"
	case authBusy:
		return "busy"
	}
	return "wrong"
}

// passwordChecker verifies basic-auth passwords against bcrypt hashes so
// that the network cannot make the agent spend its CPU on bcrypt:
//   - a verified (user, password) is cached for credentialTTL, keyed by an
//     HMAC under a random per-process key (the password is never kept);
//   - every attempt that is not a cache hit is paid for with a token from
//     the client address's bucket and from a global one, given back when
//     the password was right; an empty bucket answers 429 without running
//     bcrypt;
//   - one bcrypt runs at a time; at most maxWaiters wait for it (for at
//     most bcryptWait), the rest get 503 and their tokens stay spent.
type passwordChecker struct {
	compare func(hash, pw []byte) error // yieldingCompare; tests count calls
	now     func() time.Time
	key     [32]byte

	mu      sync.Mutex
	cache   map[[32]byte]time.Time // HMAC(user, password) -> expiry
	buckets map[netip.Prefix]*bucket
	trusted map[netip.Prefix]time.Time // addresses that logged in lately -> until when
	global  bucket
	other   bucket // the addresses beyond maxBuckets
	waiters int

	slot chan struct{} // capacity 1: the bcrypt in progress
}

func newPasswordChecker() (*passwordChecker, error) {
	c := &passwordChecker{
		compare: yieldingCompare,
		now:     time.Now,
		cache:   map[[32]byte]time.Time{},
		buckets: map[netip.Prefix]*bucket{},
		trusted: map[netip.Prefix]time.Time{},
		slot:    make(chan struct{}, 1),
	}
	if _, err := rand.Read(c.key[:]); err != nil {
		return nil, fmt.Errorf("webui: credential cache key: %w", err)
	}
	now := c.now()
	c.global = bucket{tokens: globalFailBurst, at: now}
	c.other = bucket{tokens: failBurst, at: now}
	return c, nil
}

// dummyHash is compared against when the user is unknown, so that a wrong
// name costs as much time as a wrong password.
var dummyHash = sync.OnceValue(func() []byte {
	h, _ := bcrypt.GenerateFromPassword([]byte("redhaven-dummy"), bcrypt.DefaultCost)
	return h
})

// check verifies pw against hash (nil hash: unknown user, always wrong
// after the same work) for a request from remote.
func (c *passwordChecker) check(ctx context.Context, remote, name, pw string, hash []byte) authResult {
	id := c.credentialID(name, pw)
	now := c.now()
	c.mu.Lock()
	if exp, ok := c.cache[id]; ok && hash != nil {
		if now.Before(exp) {
			c.trust(remote, now)
			c.mu.Unlock()
			return authOK
		}
		delete(c.cache, id)
	}
	b := c.bucketFor(remote)
	if !b.take(now, failBurst, failEvery) {
		c.mu.Unlock()
		return authLimited
	}
	if !c.global.take(now, globalFailBurst, globalFailEvery) {
		// The address's token stays spent too: an address that keeps
		// trying while all are limited empties its own bucket, and is
		// then refused at accept (refusesConn) without net/http.
		c.mu.Unlock()
		return authLimited
	}
	if c.waiters >= maxWaiters {
		c.mu.Unlock()
		return authBusy // the tokens stay spent: a flood empties its bucket
	}
	c.waiters++
	c.mu.Unlock()

	ok, acquired := c.compareOne(ctx, hash, pw)

	c.mu.Lock()
	defer c.mu.Unlock()
	c.waiters--
	if !acquired {
		return authBusy
	}
	if !ok {
		return authBad
	}
	b.give(failBurst)
	c.global.give(globalFailBurst)
	c.remember(id, now.Add(credentialTTL))
	c.trust(remote, now)
	return authOK
}

// compareOne runs one bcrypt comparison once the slot is free; acquired is
// false when the slot stayed busy for bcryptWait or ctx ended.
func (c *passwordChecker) compareOne(ctx context.Context, hash []byte, pw string) (ok, acquired bool) {
	t := time.NewTimer(bcryptWait)
	defer t.Stop()
	select {
	case c.slot <- struct{}{}:
	case <-t.C:
		return false, false
	case <-ctx.Done():
		return false, false
	}
	defer func() { <-c.slot }()
	if hash == nil {
		_ = c.compare(dummyHash(), []byte(pw))
		return false, true
	}
	return c.compare(hash, []byte(pw)) == nil, true
}

func (c *passwordChecker) credentialID(name, pw string) [32]byte {
	m := hmac.New(sha256.New, c.key[:])
	m.Write([]byte(name))
	m.Write([]byte{0})
	m.Write([]byte(pw))
	var id [32]byte
	copy(id[:], m.Sum(nil))
	return id
}

// forget drops every cached credential (the users changed).
func (c *passwordChecker) forget() {
	c.mu.Lock()
	clear(c.cache)
	c.mu.Unlock()
}

// remember caches a verified credential; c.mu is held.
func (c *passwordChecker) remember(id [32]byte, exp time.Time) {
	if len(c.cache) >= maxCredentials {
		now := c.now()
		for k, e := range c.cache {
			if !now.Before(e) {
				delete(c.cache, k)
			}
		}
		if len(c.cache) >= maxCredentials {
			clear(c.cache)
		}
	}
	c.cache[id] = exp
}

// refusesConn tells whether a new connection from addr is to be refused
// before net/http reads anything: its address (or the shared bucket of the
// addresses beyond maxBuckets) has no token left for a wrong password, and
// no user logged in from it within credentialTTL (a cached credential
// passes the limits, so such an address still gets the full check).
func (c *passwordChecker) refusesConn(addr netip.Addr) bool {
	p := clientPrefix(addr)
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if until, ok := c.trusted[p]; ok && now.Before(until) {
		return false
	}
	b, ok := c.buckets[p]
	if !ok {
		if len(c.buckets) < maxBuckets {
			return false // a new address: bucketFor will give it a full bucket
		}
		b = &c.other
	}
	b.refill(now, failBurst, failEvery)
	return b.tokens < 1
}

// trust marks the address of remote as one a user logged in from (see
// refusesConn); c.mu is held.
func (c *passwordChecker) trust(remote string, now time.Time) {
	p, ok := remotePrefix(remote)
	if !ok {
		return
	}
	if len(c.trusted) >= maxBuckets {
		for k, until := range c.trusted {
			if !now.Before(until) {
				delete(c.trusted, k)
			}
		}
		if len(c.trusted) >= maxBuckets {
			clear(c.trusted)
		}
	}
	c.trusted[p] = now.Add(credentialTTL)
}

// clientPrefix is what a client address is limited by: IPv4 by address,
// IPv6 by /64, which one host usually holds whole.
func clientPrefix(addr netip.Addr) netip.Prefix {
	addr = addr.Unmap()
	bits := 32
	if addr.Is6() {
		bits = 64
	}
	p, _ := addr.Prefix(bits)
	return p
}

// remotePrefix is clientPrefix of a request's RemoteAddr (host:port).
func remotePrefix(remote string) (netip.Prefix, bool) {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Prefix{}, false
	}
	return clientPrefix(addr), true
}

// bucketFor returns the failure bucket of a client address; c.mu is held.
func (c *passwordChecker) bucketFor(remote string) *bucket {
	p, ok := remotePrefix(remote)
	if !ok {
		return &c.other
	}
	if b, ok := c.buckets[p]; ok {
		return b
	}
	if len(c.buckets) >= maxBuckets {
		now := c.now()
		for k, b := range c.buckets {
			if b.full(now, failBurst, failEvery) {
				delete(c.buckets, k)
			}
		}
		if len(c.buckets) >= maxBuckets {
			return &c.other
		}
	}
	b := &bucket{tokens: failBurst, at: c.now()}
	c.buckets[p] = b
	return b
}

// bucket is a token bucket: burst tokens, one more every interval.
type bucket struct {
	tokens float64
	at     time.Time
}

func (b *bucket) refill(now time.Time, burst int, every time.Duration) {
	if now.After(b.at) {
		b.tokens = min(float64(burst), b.tokens+float64(now.Sub(b.at))/float64(every))
		b.at = now
	}
}

func (b *bucket) take(now time.Time, burst int, every time.Duration) bool {
	b.refill(now, burst, every)
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

func (b *bucket) give(burst int) { b.tokens = min(float64(burst), b.tokens+1) }

func (b *bucket) full(now time.Time, burst int, every time.Duration) bool {
	b.refill(now, burst, every)
	return b.tokens >= float64(burst)
}
