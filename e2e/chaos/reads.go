package chaos

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
)

// An LRANGE returns the whole list, and the list only grows, so recording
// every read in full made the history grow with the square of the run's
// length (seed 2, 10 min, 4 keys: more than 958 MB). A read is recorded
// compactly instead: Op.Known is the number of values it shares, as a
// prefix, with the same client's previous read of the key, and Op.List
// holds only the values after them. A read that does not extend the
// previous one (a value vanished or moved) has Known 0 and its whole list,
// so the checks see it unchanged.

// ReadRecorder compacts one client's successive LRANGE results. The zero
// value is ready; it is not safe for concurrent use (one per client).
type ReadRecorder struct {
	seen map[string][]string // key -> the client's previous full read
}

// Record returns what to store for a successful read of key that returned
// list: the length of the previous read when list extends it, and the
// values after it; otherwise 0 and the whole list.
func (r *ReadRecorder) Record(key string, list []string) (known int, tail []string) {
	if r.seen == nil {
		r.seen = map[string][]string{}
	}
	prev := r.seen[key]
	r.seen[key] = list
	if len(prev) > 0 && isPrefix(prev, list) {
		// a copy: a subslice would keep the whole reply's array (and every
		// value in it) alive for each read, quadratic again (seed 3: the
		// writer held 5 GB after 14 minutes)
		return len(prev), slices.Clone(list[len(prev):])
	}
	return 0, list
}

// CompactReads returns ops with every successful LRANGE recorded as the
// workload client records it (ReadRecorder), e.g. to shrink a history
// recorded in full. ops is not changed.
func CompactReads(ops []Op) []Op {
	out := slices.Clone(ops)
	recs := map[int]*ReadRecorder{}
	for _, i := range readsInClientOrder(out) {
		o := &out[i]
		if o.Known > 0 {
			panic("chaos: CompactReads of a compact history")
		}
		r := recs[o.Client]
		if r == nil {
			r = &ReadRecorder{}
			recs[o.Client] = r
		}
		o.Known, o.List = r.Record(o.Key, o.List)
	}
	return out
}

// ExpandReads returns ops with every LRANGE's whole list (Known 0). The
// lists of one client's successive reads share their backing array, so the
// result takes memory in proportion to the compact history, not to the
// full one. ops is not changed.
func ExpandReads(ops []Op) ([]Op, error) {
	reads, err := decodeReads(ops)
	if err != nil {
		return nil, err
	}
	out := slices.Clone(ops)
	for _, r := range reads {
		out[r.op].Known, out[r.op].List = 0, r.list()
	}
	return out, nil
}

// chain is the values a client saw on a key over successive reads that
// each extended the one before; its reads are prefixes of items.
type chain struct {
	id    int
	items []string
}

// listRead is one successful LRANGE: its list is chain.items[:n].
type listRead struct {
	op    int // index in ops
	chain *chain
	n     int
}

func (r listRead) list() []string { return r.chain.items[:r.n:r.n] }

// readsInClientOrder returns the indexes of the successful LRANGEs, each
// client's in the order it made them (a client runs one operation at a
// time, so by invocation).
func readsInClientOrder(ops []Op) []int {
	var idx []int
	for i, o := range ops {
		if o.Kind == KindLRange && o.Outcome == OK {
			idx = append(idx, i)
		}
	}
	sort.SliceStable(idx, func(a, b int) bool {
		x, y := ops[idx[a]], ops[idx[b]]
		if x.Client != y.Client {
			return x.Client < y.Client
		}
		return x.Invoke < y.Invoke
	})
	return idx
}

// decodeReads rebuilds every successful LRANGE's list, compact or full,
// as a prefix of its client's chain on that key. A full read that extends
// the client's previous one joins its chain too, so a history recorded in
// full decodes to the same chains as its compact form.
func decodeReads(ops []Op) ([]listRead, error) {
	type ck struct {
		client int
		key    string
	}
	cur := map[ck]*chain{}
	ids := 0
	newChain := func(items []string) *chain {
		ids++
		return &chain{id: ids, items: items}
	}
	idx := readsInClientOrder(ops)
	reads := make([]listRead, 0, len(idx))
	for _, i := range idx {
		o := ops[i]
		k := ck{o.Client, o.Key}
		c := cur[k]
		switch {
		case o.Known > 0 && (c == nil || o.Known > len(c.items)):
			have := 0
			if c != nil {
				have = len(c.items)
			}
			return nil, fmt.Errorf("history: client %d's read of %s at %d extends %d values, its previous read had %d",
				o.Client, o.Key, o.Invoke, o.Known, have)
		case o.Known > 0 && o.Known == len(c.items):
			c.items = append(c.items, o.List...) // earlier reads keep their shorter views
		case o.Known > 0:
			// Extends a shorter view than the last read (the workload never
			// records this, but it is well defined): a new chain.
			c = newChain(append(slices.Clone(c.items[:o.Known]), o.List...))
		case c != nil && isPrefix(c.items, o.List):
			c.items = append(c.items, o.List[len(c.items):]...)
		default:
			c = newChain(slices.Clip(o.List))
		}
		cur[k] = c
		reads = append(reads, listRead{op: i, chain: c, n: len(c.items)})
	}
	return reads, nil
}

// prefixes answers "is one read a prefix of another" without comparing
// whole lists per pair of reads: two reads on one chain compare by length,
// and two chains' common prefix is computed once.
type prefixes struct {
	common map[[2]int]int
}

func (p *prefixes) isPrefix(a, b listRead) bool {
	if a.n > b.n {
		return false
	}
	if a.chain == b.chain {
		return true
	}
	x, y := a.chain, b.chain
	if x.id > y.id {
		x, y = y, x
	}
	pair := [2]int{x.id, y.id}
	n, ok := p.common[pair]
	if !ok {
		for n < len(x.items) && n < len(y.items) && x.items[n] == y.items[n] {
			n++
		}
		if p.common == nil {
			p.common = map[[2]int]int{}
		}
		p.common[pair] = n
	}
	return a.n <= n
}

// FullSize is the size in bytes that WriteOps would give ops with every
// LRANGE recorded whole (as before ReadRecorder), computed without
// building the whole lists, to compare the two forms on one history.
func FullSize(ops []Op) (int64, error) {
	reads, err := decodeReads(ops)
	if err != nil {
		return 0, err
	}
	cum := map[*chain][]int64{} // cum[c][i]: JSON bytes of c.items[:i], one comma each
	listBytes := func(c *chain, n int) int64 {
		if n == 0 {
			return 0 // omitempty
		}
		s := cum[c]
		for i := len(s); i <= len(c.items); i++ {
			if i == 0 {
				s = append(s, 0)
				continue
			}
			b, _ := json.Marshal(c.items[i-1])
			s = append(s, s[i-1]+int64(len(b))+1)
		}
		cum[c] = s
		return int64(len(`,"list":[]`)) + s[n] - 1
	}
	var size int64
	readOf := make(map[int]listRead, len(reads))
	for _, r := range reads {
		readOf[r.op] = r
	}
	for i, o := range ops {
		if r, ok := readOf[i]; ok {
			o.Known, o.List = 0, nil
			b, err := json.Marshal(o)
			if err != nil {
				return 0, err
			}
			size += int64(len(b)) + 1 + listBytes(r.chain, r.n)
			continue
		}
		b, err := json.Marshal(o)
		if err != nil {
			return 0, err
		}
		size += int64(len(b)) + 1
	}
	return size, nil
}
