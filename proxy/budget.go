package proxy

import (
	"bufio"
	"bytes"
	"os"
	"sort"
	"strconv"
	"sync/atomic"
	"unsafe"
)

// Bounds on what one client may make the proxy buffer.
const (
	// before AUTH (proxy.password mode): a client that has not proven who
	// it is gets little memory and no long pipelines
	unauthInputMax  = 64 << 10 // buffered input
	unauthOutputMax = 64 << 10 // answers it has not read
	unauthPipeline  = 8        // commands in one batch
)

// bufferBudget is proxy.max_buffer_memory: the memory all clients' buffered
// input and unread output may hold together. Input is counted as buffers
// grow (requestReader.hold, rare: the buffer doubles); output is summed by
// the sweep (hygiene.go), so the hot path pays nothing. Beyond the limit
// the largest consumers are disconnected.
type bufferBudget struct {
	limit int64
	input atomic.Int64 // grown client read buffers, all sessions
	used  atomic.Int64 // input and output at the last sweep (metric)
	hint  chan struct{}
}

func newBufferBudget(limit int64) *bufferBudget {
	if limit <= 0 {
		limit = defaultBufferMemory()
	}
	return &bufferBudget{limit: limit, hint: make(chan struct{}, 1)}
}

// bufferUse is one session's share of the budget.
type bufferUse struct {
	budget *bufferBudget
	input  atomic.Int64 // its read buffer, when grown
}

// setInput records the size of the session's grown read buffer and wakes
// the sweep when the input alone is over the budget.
func (u *bufferUse) setInput(n int64) {
	old := u.input.Swap(n)
	if u.budget == nil {
		return
	}
	if u.budget.input.Add(n-old) > u.budget.limit {
		select {
		case u.budget.hint <- struct{}{}:
		default:
		}
	}
}

// release takes the session's input out of the budget (session ended).
func (u *bufferUse) release() { u.setInput(0) }

// entryCost is about what a FIFO entry costs: the entry, twice (the ring
// doubles), and a reply of the proxy's own (measured: 246 bytes per
// refused command queued, TestMeasureAttacks).
const entryCost = 2*int64(unsafe.Sizeof(entry{})) + 64

// outputLocked is the memory a client holds beyond its read buffer (s.mu
// held): output it has not read (pend, and out as of the last write),
// answers queued behind a write that waits for it (FIFO entries), and the
// commands kept for a resend.
func (s *session) outputLocked() int64 {
	return int64(len(s.pend)) + s.outBacklog.Load() + int64(s.q.len())*entryCost + int64(len(s.sendLog))
}

// sweepBudget sums every session's buffers and disconnects the largest
// consumers while the total is over the budget.
func (srv *Server) sweepBudget(sessions []*session) {
	type usage struct {
		s *session
		n int64
	}
	var total int64
	var big []usage
	for _, s := range sessions {
		if s.closedFor.Load() {
			continue // closed by a sweep before; its buffers go with it
		}
		s.mu.Lock()
		n := s.outputLocked()
		s.mu.Unlock()
		n += s.guard.use.input.Load()
		total += n
		if n > 0 {
			big = append(big, usage{s, n})
		}
	}
	srv.budget.used.Store(total)
	if total <= srv.budget.limit {
		return
	}
	sort.Slice(big, func(i, j int) bool { return big[i].n > big[j].n })
	for _, u := range big {
		if total <= srv.budget.limit {
			break
		}
		total -= u.n
		u.s.logger().Warn("client buffers over proxy.max_buffer_memory; closing the largest consumer",
			"buffered_bytes", u.n, "limit_bytes", srv.budget.limit)
		u.s.closeFor(closedBufferMemory, replyBufferMemory)
	}
}

// defaultBufferMemory is a quarter of the machine's memory (1 GiB if it
// cannot be read).
func defaultBufferMemory() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 1 << 30
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := bytes.CutPrefix(sc.Bytes(), []byte("MemTotal:")); ok {
			kb, err := strconv.ParseInt(string(bytes.TrimSpace(bytes.TrimSuffix(bytes.TrimSpace(v), []byte("kB")))), 10, 64)
			if err == nil && kb > 0 {
				return kb << 10 / 4
			}
		}
	}
	return 1 << 30
}
