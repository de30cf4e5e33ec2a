package webui

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"golang.org/x/crypto/bcrypt"
)

type emptySource struct{}

func (emptySource) Snapshot() Snapshot { return Snapshot{Node: "n"} }

// countingCompare is an injectable bcrypt comparison that counts calls and
// the most that ever ran at once.
type countingCompare struct {
	calls, running, maxRunning atomic.Int32
}

func (c *countingCompare) compare(hash, pw []byte) error {
	c.calls.Add(1)
	n := c.running.Add(1)
	defer c.running.Add(-1)
	for {
		m := c.maxRunning.Load()
		if n <= m || c.maxRunning.CompareAndSwap(m, n) {
			break
		}
	}
	time.Sleep(2 * time.Millisecond) // widen the window in which a second one could overlap
	return bcrypt.CompareHashAndPassword(hash, pw)
}

func floodServer(t *testing.T) (*Server, *countingCompare) {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte("right"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Listen, cfg.AdminSocket = "127.0.0.1:0", ""
	cfg.Auth = []User{{Name: "alice", PasswordHash: string(h), Role: RoleRead}}
	s, err := New(cfg, emptySource{}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	s.limitedDelay = 0 // TestLimitedDelay checks it
	cc := &countingCompare{}
	s.passwords.compare = cc.compare
	frozen := time.Now().Add(time.Hour) // no refill during the test
	s.passwords.now = func() time.Time { return frozen }
	return s, cc
}

func getStats(h http.Handler, remote, name, pw string) int {
	req := httptest.NewRequest("GET", "/api/v1/stats", nil)
	req.RemoteAddr = remote
	req.SetBasicAuth(name, pw)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code
}

// Many wrong passwords at once from one address: one bcrypt at a time, at
// most failBurst of them, the rest answered 429 (or 503 while waiting for
// the slot is full) without bcrypt; a right password then still works from
// another address, once through bcrypt and then from the cache.
func TestPasswordFlood(t *testing.T) {
	s, cc := floodServer(t)
	h := s.Handler()
	const attempts = 200
	codes := map[int]int{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := 0; i < attempts; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			user := "alice"
			if i%4 == 0 {
				user = "mallory" // unknown user: the same bcrypt work, the same limits
			}
			code := getStats(h, "198.51.100.7:4000", user, fmt.Sprint("wrong", i))
			mu.Lock()
			codes[code]++
			mu.Unlock()
		}(i)
	}
	wg.Wait()
	if m := cc.maxRunning.Load(); m != 1 {
		t.Errorf("at most %d bcrypt ran at once, want 1", m)
	}
	if n := cc.calls.Load(); n > failBurst || n == 0 {
		t.Errorf("%d bcrypt runs for %d wrong passwords, want 1..%d", n, attempts, failBurst)
	}
	if codes[401] != int(cc.calls.Load()) || codes[429] == 0 || codes[401]+codes[429]+codes[503] != attempts {
		t.Errorf("status counts %v (bcrypt ran %d times)", codes, cc.calls.Load())
	}
	before := cc.calls.Load()
	if code := getStats(h, "198.51.100.7:4001", "alice", "wrong-again"); code != 429 {
		t.Errorf("after the flood: %d, want 429", code)
	}
	if cc.calls.Load() != before {
		t.Error("bcrypt ran for a limited address")
	}
	// Another address, right password: one bcrypt, then cached.
	for i := 0; i < 5; i++ {
		if code := getStats(h, "203.0.113.9:5000", "alice", "right"); code != 200 {
			t.Fatalf("right password, try %d: %d", i, code)
		}
	}
	if n := cc.calls.Load() - before; n != 1 {
		t.Errorf("5 logins with the right password ran bcrypt %d times, want 1 (then cached)", n)
	}
	// The cached credential works from the flooded address too, without bcrypt.
	if code := getStats(h, "198.51.100.7:4002", "alice", "right"); code != 200 {
		t.Errorf("cached credential from the limited address: %d", code)
	}
	// The cache is keyed by user and password: a wrong one is no hit.
	if code := getStats(h, "203.0.113.9:5001", "alice", "righ"); code != 401 {
		t.Errorf("wrong password after a cached right one: %d", code)
	}
	if n := cc.calls.Load() - before; n != 2 {
		t.Errorf("bcrypt ran %d times, want 2", n)
	}
	// What was refused is counted.
	var m dto.Metric
	if err := s.authRefused.WithLabelValues("limited").Write(&m); err != nil {
		t.Fatal(err)
	}
	if got := m.GetCounter().GetValue(); int(got) != codes[429]+1 {
		t.Errorf("redhaven_http_auth_refused_total{reason=limited} = %v, want %d", got, codes[429]+1)
	}
}

// Wrong passwords from many addresses, a new one each time: the global
// bucket stops bcrypt after globalFailBurst, whatever the address.
func TestPasswordFloodManyAddresses(t *testing.T) {
	s, cc := floodServer(t)
	h := s.Handler()
	codes := map[int]int{}
	for i := 0; i < 3*globalFailBurst; i++ {
		codes[getStats(h, fmt.Sprintf("10.1.%d.%d:1", i/200, i%200), "alice", fmt.Sprint("wrong", i))]++
	}
	if n := cc.calls.Load(); n != globalFailBurst {
		t.Errorf("bcrypt ran %d times, want %d", n, globalFailBurst)
	}
	if codes[401] != globalFailBurst || codes[429] != 2*globalFailBurst {
		t.Errorf("status counts %v", codes)
	}
}

// A credential is never kept in clear: the cache holds HMACs only, and the
// key is per process.
func TestCredentialIDs(t *testing.T) {
	a, _ := newPasswordChecker()
	b, _ := newPasswordChecker()
	h := []byte("$2a$10$hash")
	if a.credentialID("alice", "pw", h) == b.credentialID("alice", "pw", h) {
		t.Error("two processes derive the same cache key")
	}
	if a.credentialID("alice", "pw", h) == a.credentialID("alic", "epw", h) ||
		a.credentialID("a\x00b", "c", h) == a.credentialID("a", "b\x00c", h) {
		t.Error("user and password not separated in the cache key")
	}
	if a.credentialID("alice", "pw", h) == a.credentialID("alice", "pw", []byte("$2a$10$other")) {
		t.Error("the hash is not part of the cache key")
	}
	if a.credentialID("alice", "pw", h) == a.failureID("alice", "pw", h) {
		t.Error("verified and refused credentials share a key")
	}
}

// Tokens come back with time: burst, then one per failEvery.
func TestBucket(t *testing.T) {
	t0 := time.Unix(1000, 0)
	b := bucket{tokens: 2, at: t0}
	if !b.take(t0, 2, time.Second) || !b.take(t0, 2, time.Second) || b.take(t0, 2, time.Second) {
		t.Fatal("burst of 2 not exactly 2")
	}
	if b.take(t0.Add(500*time.Millisecond), 2, time.Second) {
		t.Error("token back before its time")
	}
	if !b.take(t0.Add(1100*time.Millisecond), 2, time.Second) {
		t.Error("no token back after the interval")
	}
	if !b.full(t0.Add(time.Hour), 2, time.Second) || b.tokens != 2 {
		t.Errorf("refill beyond the burst: %v", b.tokens)
	}
}

// A 429 for an address over its limit is delayed, for at most maxDelayed
// requests at once; the others are answered at once.
func TestLimitedDelay(t *testing.T) {
	s, _ := floodServer(t)
	s.limitedDelay = 300 * time.Millisecond
	h := s.Handler()
	for i := 0; i < failBurst; i++ {
		getStats(h, "198.51.100.9:1", "alice", "wrong")
	}
	t0 := time.Now()
	if code := getStats(h, "198.51.100.9:1", "alice", "wrong"); code != 429 {
		t.Fatalf("over the limit: %d", code)
	}
	if d := time.Since(t0); d < s.limitedDelay {
		t.Errorf("429 after %v, want at least %v", d, s.limitedDelay)
	}
	for i := 0; i < maxDelayed; i++ {
		s.delayed <- struct{}{} // every slot taken
	}
	t0 = time.Now()
	if code := getStats(h, "198.51.100.9:1", "alice", "wrong"); code != 429 {
		t.Fatalf("over the limit: %d", code)
	}
	if d := time.Since(t0); d >= s.limitedDelay {
		t.Errorf("429 delayed %v with every slot taken", d)
	}
}

// The same wrong password again costs no bcrypt, from any address, until
// it expires; the address's limit still counts it; a right password for
// the same user still works; a reload forgets every refusal.
func TestRefusedCredentialCache(t *testing.T) {
	s, cc := floodServer(t)
	now := time.Now().Add(time.Hour)
	s.passwords.now = func() time.Time { return now }
	h := s.Handler()

	// Many addresses, one wrong password: one bcrypt, every answer 401,
	// the global bucket spent once.
	for i := 0; i < 3*globalFailBurst; i++ {
		if code := getStats(h, fmt.Sprintf("10.2.0.%d:1", i+1), "alice", "guess"); code != 401 {
			t.Fatalf("address %d: %d, want 401", i, code)
		}
	}
	if n := cc.calls.Load(); n != 1 {
		t.Errorf("the same wrong password from %d addresses ran bcrypt %d times, want 1", 3*globalFailBurst, n)
	}
	if g := s.passwords.global.tokens; g != globalFailBurst-1 {
		t.Errorf("global bucket %v tokens, want %d", g, globalFailBurst-1)
	}
	// An unknown user is cached the same way (same work, same answers).
	for i := 0; i < 3; i++ {
		if code := getStats(h, fmt.Sprintf("10.3.0.%d:1", i+1), "mallory", "guess"); code != 401 {
			t.Fatalf("unknown user %d: %d", i, code)
		}
	}
	if n := cc.calls.Load(); n != 2 {
		t.Errorf("bcrypt ran %d times, want 2", n)
	}
	// A cached refusal needs no global token: with the global bucket
	// empty, still 401 (not 429) from a new address.
	s.passwords.mu.Lock()
	saved := s.passwords.global.tokens
	s.passwords.global.tokens = 0
	s.passwords.mu.Unlock()
	if code := getStats(h, "10.3.1.1:1", "alice", "guess"); code != 401 {
		t.Errorf("cached wrong password with the global bucket empty: %d, want 401", code)
	}
	s.passwords.mu.Lock()
	s.passwords.global.tokens = saved
	s.passwords.mu.Unlock()

	// One address: the cached refusal still spends its tokens, then 429.
	for i := 0; i < failBurst; i++ {
		if code := getStats(h, "10.4.0.1:1", "alice", "guess"); code != 401 {
			t.Fatalf("try %d from one address: %d, want 401", i, code)
		}
	}
	if code := getStats(h, "10.4.0.1:1", "alice", "guess"); code != 429 {
		t.Errorf("over the address's limit with a cached wrong password: %d, want 429", code)
	}
	if n := cc.calls.Load(); n != 2 {
		t.Errorf("bcrypt ran %d times, want 2", n)
	}

	// The right password after the cached wrong one: bcrypt, 200.
	if code := getStats(h, "10.2.0.1:2", "alice", "right"); code != 200 {
		t.Errorf("right password after a cached wrong one: %d", code)
	}
	if n := cc.calls.Load(); n != 3 {
		t.Errorf("bcrypt ran %d times, want 3", n)
	}

	// Expiry: after failureTTL the wrong password is checked again.
	now = now.Add(failureTTL + time.Second)
	if code := getStats(h, "10.5.0.1:1", "alice", "guess"); code != 401 {
		t.Errorf("after expiry: %d", code)
	}
	if n := cc.calls.Load(); n != 4 {
		t.Errorf("after expiry bcrypt ran %d times in all, want 4", n)
	}
	if code := getStats(h, "10.5.0.2:1", "alice", "guess"); code != 401 || cc.calls.Load() != 4 {
		t.Errorf("cached again: %d, bcrypt ran %d times in all, want 4", code, cc.calls.Load())
	}

	// A reload forgets it: the same list, checked again; a new hash that
	// makes "guess" right lets it in at once.
	s.SetUsers([]User{{Name: "alice", PasswordHash: s.cfg.Auth[0].PasswordHash, Role: RoleRead}})
	if code := getStats(h, "10.6.0.1:1", "alice", "guess"); code != 401 || cc.calls.Load() != 5 {
		t.Errorf("after a reload: %d, bcrypt ran %d times in all, want 5", code, cc.calls.Load())
	}
	nh, err := bcrypt.GenerateFromPassword([]byte("guess"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	s.SetUsers([]User{{Name: "alice", PasswordHash: string(nh), Role: RoleRead}})
	if code := getStats(h, "10.6.0.2:1", "alice", "guess"); code != 200 {
		t.Errorf("the new password after a reload: %d", code)
	}
	if code := getStats(h, "10.6.0.3:1", "alice", "right"); code != 401 {
		t.Errorf("the old password after a reload: %d", code)
	}

	// redhaven_http_auth_bcrypt_total counts the comparisons.
	if got, want := s.passwords.bcrypts.Load(), int64(cc.calls.Load()); got != want {
		t.Errorf("bcrypt counter %d, calls %d", got, want)
	}
}

// The hash is part of both keys: without a reload (a hash changed while
// its bcrypt ran), no cached outcome applies to another hash.
func TestCachesKeyedByHash(t *testing.T) {
	c, err := newPasswordChecker()
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int32
	c.compare = func(hash, pw []byte) error {
		calls.Add(1)
		return bcrypt.CompareHashAndPassword(hash, pw)
	}
	h1, _ := bcrypt.GenerateFromPassword([]byte("one"), bcrypt.MinCost)
	h2, _ := bcrypt.GenerateFromPassword([]byte("two"), bcrypt.MinCost)
	ctx := context.Background()
	if r := c.check(ctx, "10.0.0.1:1", "alice", "two", h1); r != authBad {
		t.Fatalf("two against h1: %v", r)
	}
	if r := c.check(ctx, "10.0.0.2:1", "alice", "two", h2); r != authOK {
		t.Errorf("two against h2 after its refusal against h1: %v", r)
	}
	if r := c.check(ctx, "10.0.0.3:1", "alice", "two", h1); r != authBad {
		t.Errorf("two against h1 after its success against h2: %v", r)
	}
	if n := calls.Load(); n != 2 {
		t.Errorf("bcrypt ran %d times, want 2 (the third from the refusal cache)", n)
	}
}

// Both caches are bounded: beyond the limit the expired entries go, then
// all.
func TestCacheBound(t *testing.T) {
	c, err := newPasswordChecker()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(5000, 0)
	c.now = func() time.Time { return now }
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := 0; i < maxFailures/2; i++ {
		c.rememberIn(c.failed, maxFailures, c.failureID("u", fmt.Sprint("old", i), nil), now.Add(time.Second))
	}
	now = now.Add(2 * time.Second) // those have expired
	for i := 0; i < maxFailures/2+10; i++ {
		c.rememberIn(c.failed, maxFailures, c.failureID("u", fmt.Sprint("new", i), nil), now.Add(failureTTL))
	}
	if n := len(c.failed); n != maxFailures/2+10 {
		t.Errorf("%d entries after the expired went, want %d", n, maxFailures/2+10)
	}
	for i := 0; i < 3*maxFailures; i++ {
		c.rememberIn(c.failed, maxFailures, c.failureID("u", fmt.Sprint("more", i), nil), now.Add(failureTTL))
		if len(c.failed) > maxFailures {
			t.Fatalf("%d entries, limit %d", len(c.failed), maxFailures)
		}
	}
	if !c.refused(c.failureID("u", fmt.Sprint("more", 3*maxFailures-1), nil), now) {
		t.Error("the newest refusal is not cached")
	}
}

// The same wrong password sent at once by many requests (all waiting for
// the slot) costs one bcrypt: the waiters look at the cache again.
func TestRefusedConcurrent(t *testing.T) {
	s, cc := floodServer(t)
	h := s.Handler()
	var wg sync.WaitGroup
	codes := make([]int, maxWaiters)
	for i := range codes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i] = getStats(h, fmt.Sprintf("10.7.0.%d:1", i+1), "alice", "same-guess")
		}()
	}
	wg.Wait()
	for i, code := range codes {
		if code != 401 {
			t.Errorf("request %d: %d, want 401", i, code)
		}
	}
	if n := cc.calls.Load(); n != 1 {
		t.Errorf("%d concurrent requests with one wrong password ran bcrypt %d times, want 1", maxWaiters, n)
	}
	if g := s.passwords.global.tokens; g != globalFailBurst-1 {
		t.Errorf("global bucket %v tokens, want %d (the waiters' tokens back)", g, globalFailBurst-1)
	}
}
