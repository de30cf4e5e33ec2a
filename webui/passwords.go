package webui

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Bounds of the password checker. bcrypt costs tens of milliseconds of CPU
// by design; the agent often runs on one Go thread next to the proxy, so
// every bcrypt the network can trigger is a pause for the clients.
const (
	credentialTTL   = 5 * time.Minute  // a verified credential skips bcrypt this long
	maxCredentials  = 1024             // cached credentials; beyond, the expired ones go, then all
	failureTTL      = 5 * time.Minute  // a refused (user, password, hash) skips bcrypt this long
	maxFailures     = 1024             // cached refusals; beyond, the expired ones go, then all
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
//     HMAC of it and the user's hash under a random per-process key (the
//     password is never kept);
//   - every attempt that is not a verified credential is paid for with a
//     token from the client address's bucket and from a global one, given
//     back when the password was right; an empty bucket answers 429
//     without running bcrypt;
//   - a refused (user, password, hash) is cached too, for failureTTL and
//     under its own HMAC: the same wrong password again, from any address,
//     is answered 401 without bcrypt and without the global token (the
//     address's token is still spent, so its limit is unchanged). The
//     hash is part of the key, so a changed password never meets an old
//     refusal; a reload clears both caches anyway (forget). Its quicker
//     401 tells a client only that this exact pair was refused lately;
//     an attacker who tries a new password each time never hits it;
//   - one bcrypt runs at a time; at most maxWaiters wait for it (for at
//     most bcryptWait), the rest get 503 and their tokens stay spent. Both
//     caches are looked at again once the slot is held, so the same
//     password sent at once by many waiters costs one bcrypt.
type passwordChecker struct {
	compare func(hash, pw []byte) error // threadCompare; tests count calls
	now     func() time.Time
	key     [32]byte

	mu      sync.Mutex
	cache   map[[32]byte]time.Time // HMAC(user, password, hash) of verified ones -> expiry
	failed  map[[32]byte]time.Time // HMAC(user, password, hash) of refused ones -> expiry
	buckets map[netip.Prefix]*bucket
	trusted map[netip.Prefix]time.Time // addresses that logged in lately -> until when
	global  bucket
	other   bucket // the addresses beyond maxBuckets
	waiters int

	slot    chan struct{} // capacity 1: the bcrypt in progress
	bcrypts atomic.Int64  // comparisons run (redhaven_http_auth_bcrypt_total)
}

func newPasswordChecker() (*passwordChecker, error) {
	c := &passwordChecker{
		compare: threadCompare,
		now:     time.Now,
		cache:   map[[32]byte]time.Time{},
		failed:  map[[32]byte]time.Time{},
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
	var h []byte
	_ = onBcryptThread(func(bool) error { // a bcrypt too: off the proxy's P
		h, _ = bcrypt.GenerateFromPassword([]byte("redhaven-dummy"), bcrypt.DefaultCost)
		return nil
	})
	return h
})

// check verifies pw against hash (nil hash: unknown user, always wrong
// after the same work) for a request from remote.
func (c *passwordChecker) check(ctx context.Context, remote, name, pw string, hash []byte) authResult {
	id, fid := c.credentialID(name, pw, hash), c.failureID(name, pw, hash)
	now := c.now()
	c.mu.Lock()
	if c.verified(id, hash, now) {
		c.trust(remote, now)
		c.mu.Unlock()
		return authOK
	}
	b := c.bucketFor(remote)
	if !b.take(now, failBurst, failEvery) {
		c.mu.Unlock()
		return authLimited
	}
	if c.refused(fid, now) {
		c.mu.Unlock()
		return authBad // known wrong: no bcrypt, so no global token either
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

	res := c.compareOne(ctx, hash, pw, id, fid)

	c.mu.Lock()
	defer c.mu.Unlock()
	c.waiters--
	switch res {
	case compareBusy:
		return authBusy
	case compareKnownWrong:
		c.global.give(globalFailBurst) // no bcrypt ran
		return authBad
	case compareWrong:
		return authBad
	}
	b.give(failBurst)
	c.global.give(globalFailBurst)
	c.trust(remote, now)
	return authOK
}

// verified tells whether (user, password) id was verified within
// credentialTTL (and its user still has a hash); c.mu is held.
func (c *passwordChecker) verified(id [32]byte, hash []byte, now time.Time) bool {
	exp, ok := c.cache[id]
	if !ok || hash == nil {
		return false
	}
	if now.Before(exp) {
		return true
	}
	delete(c.cache, id)
	return false
}

// refused tells whether (user, password, hash) fid was refused by bcrypt
// within failureTTL; c.mu is held.
func (c *passwordChecker) refused(fid [32]byte, now time.Time) bool {
	exp, ok := c.failed[fid]
	if !ok {
		return false
	}
	if now.Before(exp) {
		return true
	}
	delete(c.failed, fid)
	return false
}

// The outcomes of compareOne.
type compareResult int

const (
	compareOK         compareResult = iota // bcrypt accepted the password
	compareWrong                           // bcrypt refused it
	compareCachedOK                        // verified meanwhile by another request: no bcrypt ran
	compareKnownWrong                      // refused meanwhile by another request: no bcrypt ran
	compareBusy                            // the slot stayed busy for bcryptWait, or ctx ended
)

// compareOne runs one bcrypt comparison once the slot is free, unless
// another request verified or refused the same credential meanwhile, and
// caches its outcome before it frees the slot (so that the next in the
// slot sees it).
func (c *passwordChecker) compareOne(ctx context.Context, hash []byte, pw string, id, fid [32]byte) compareResult {
	t := time.NewTimer(bcryptWait)
	defer t.Stop()
	select {
	case c.slot <- struct{}{}:
	case <-t.C:
		return compareBusy
	case <-ctx.Done():
		return compareBusy
	}
	defer func() { <-c.slot }()
	now := c.now()
	c.mu.Lock()
	cachedOK, knownWrong := c.verified(id, hash, now), c.refused(fid, now)
	c.mu.Unlock()
	switch {
	case cachedOK:
		return compareCachedOK
	case knownWrong:
		return compareKnownWrong
	}
	c.bcrypts.Add(1)
	ok := false
	if hash == nil {
		_ = c.compare(dummyHash(), []byte(pw))
	} else {
		ok = c.compare(hash, []byte(pw)) == nil
	}
	now = c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if ok {
		c.rememberIn(c.cache, maxCredentials, id, now.Add(credentialTTL))
		return compareOK
	}
	c.rememberIn(c.failed, maxFailures, fid, now.Add(failureTTL))
	return compareWrong
}

// credentialID is the key of a verified (user, password, hash): with the
// hash in it, a password verified against a hash that a reload replaced
// (even while its bcrypt ran) never passes for the new one.
func (c *passwordChecker) credentialID(name, pw string, hash []byte) [32]byte {
	return c.mac("redhaven-verified", name, pw, hash)
}

// failureID is the key of a refused (user, password, hash); hash is nil
// for an unknown user.
func (c *passwordChecker) failureID(name, pw string, hash []byte) [32]byte {
	return c.mac("redhaven-refused", name, pw, hash)
}

// mac is HMAC-SHA256 under the per-process key of its length-prefixed
// parts, so that no two different inputs give the same message.
func (c *passwordChecker) mac(domain, name, pw string, hash []byte) [32]byte {
	m := hmac.New(sha256.New, c.key[:])
	for _, part := range [][]byte{[]byte(domain), []byte(name), []byte(pw), hash} {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(part)))
		m.Write(n[:])
		m.Write(part)
	}
	var id [32]byte
	copy(id[:], m.Sum(nil))
	return id
}

// forget drops every cached credential and refusal (the users changed).
func (c *passwordChecker) forget() {
	c.mu.Lock()
	clear(c.cache)
	clear(c.failed)
	c.mu.Unlock()
}

// rememberIn caches id until exp in m (c.cache or c.failed), which holds at
// most limit entries: beyond, the expired ones go, then all; c.mu is held.
func (c *passwordChecker) rememberIn(m map[[32]byte]time.Time, limit int, id [32]byte, exp time.Time) {
	if len(m) >= limit {
		now := c.now()
		for k, e := range m {
			if !now.Before(e) {
				delete(m, k)
			}
		}
		if len(m) >= limit {
			clear(m)
		}
	}
	m[id] = exp
}

// connVerdict is what the gate does with a new connection.
type connVerdict int

const (
	connAdmit   connVerdict = iota // to net/http, paced with the others (gateListener.pace)
	connTrusted                    // to net/http at once: a user logged in from its address lately
	connRefuse                     // answered 429 at accept
)

// refusesConn tells whether a new connection from addr is to be refused
// before net/http reads anything: its address (or the shared bucket of the
// addresses beyond maxBuckets) has no token left for a wrong password, and
// no user logged in from it within credentialTTL (a cached credential
// passes the limits, so such an address still gets the full check).
func (c *passwordChecker) refusesConn(addr netip.Addr) bool { return c.connVerdict(addr) == connRefuse }

// connVerdict is refusesConn, telling apart the addresses a user logged
// in from (connTrusted) and the others that may pass (connAdmit).
func (c *passwordChecker) connVerdict(addr netip.Addr) connVerdict {
	p := clientPrefix(addr)
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if until, ok := c.trusted[p]; ok && now.Before(until) {
		return connTrusted
	}
	b, ok := c.buckets[p]
	if !ok {
		if len(c.buckets) < maxBuckets {
			return connAdmit // a new address: bucketFor will give it a full bucket
		}
		b = &c.other
	}
	b.refill(now, failBurst, failEvery)
	if b.tokens < 1 {
		return connRefuse
	}
	return connAdmit
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
