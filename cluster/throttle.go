package cluster

import (
	"slices"
	"strings"
	"sync"
	"time"
)

// throttle limits repeated identical log lines: the first occurrence of a
// key is logged, later ones are counted and a summary is logged at the
// next occurrence once every has passed (so a flood gives one line, then
// one line with a count every `every`). Bounded: at most maxKeys keys are
// tracked; when full, the stalest keys are forgotten.
type throttle struct {
	every time.Duration
	now   func() time.Time

	mu   sync.Mutex
	keys map[string]*throttleEntry
}

type throttleEntry struct {
	logged     time.Time // when a line was last let through
	suppressed int       // occurrences since then that were not logged
}

const throttleMaxKeys = 512

func newThrottle(every time.Duration) *throttle {
	return &throttle{every: every, now: time.Now, keys: map[string]*throttleEntry{}}
}

// allow records one occurrence of key. It returns ok=true when a line
// should be logged now, with the number of occurrences suppressed since the
// previous logged line (0 for the first).
func (t *throttle) allow(key string) (ok bool, suppressed int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	e := t.keys[key]
	if e == nil {
		if len(t.keys) >= throttleMaxKeys {
			t.evictLocked(now)
		}
		t.keys[key] = &throttleEntry{logged: now}
		return true, 0
	}
	if now.Sub(e.logged) < t.every {
		e.suppressed++
		return false, 0
	}
	n := e.suppressed
	e.logged, e.suppressed = now, 0
	return true, n
}

// reset forgets every key with the prefix: the next occurrence is logged
// at once (a state change, e.g. a peer that came back).
func (t *throttle) reset(prefix string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for k := range t.keys {
		if strings.HasPrefix(k, prefix) {
			delete(t.keys, k)
		}
	}
}

// evictLocked drops the older half of the keys.
func (t *throttle) evictLocked(now time.Time) {
	type kv struct {
		k string
		t time.Time
	}
	all := make([]kv, 0, len(t.keys))
	for k, e := range t.keys {
		all = append(all, kv{k, e.logged})
	}
	slices.SortFunc(all, func(a, b kv) int { return a.t.Compare(b.t) })
	for _, x := range all[:len(all)/2] {
		delete(t.keys, x.k)
	}
}

// logThrottleEvery is how often a throttled log line repeats with its
// count.
const logThrottleEvery = 30 * time.Second
