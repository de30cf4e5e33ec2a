package webui

import (
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

// Wrong passwords from many addresses: the global bucket stops bcrypt
// after globalFailBurst, whatever the address.
func TestPasswordFloodManyAddresses(t *testing.T) {
	s, cc := floodServer(t)
	h := s.Handler()
	codes := map[int]int{}
	for i := 0; i < 3*globalFailBurst; i++ {
		codes[getStats(h, fmt.Sprintf("10.1.%d.%d:1", i/200, i%200), "alice", "wrong")]++
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
	if a.credentialID("alice", "pw") == b.credentialID("alice", "pw") {
		t.Error("two processes derive the same cache key")
	}
	if a.credentialID("alice", "pw") == a.credentialID("alic", "epw") {
		t.Error("user and password not separated in the cache key")
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
