package topology

import (
	"bufio"
	"bytes"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redhaven/redhaven/e2e/redistest"
	"github.com/redhaven/redhaven/e2e/testutil"
)

// hostileRedis is a TCP server on loopback that answers every ROLE with
// one of the replies of the issue, in turn: 640 bytes of *1048576 and 5
// million *1 (20 MB). Anything else gets +OK.
type hostileRedis struct {
	ln      net.Listener
	replies [][]byte
	roles   atomic.Int64
	wg      sync.WaitGroup
}

func startHostileRedis(t *testing.T) *hostileRedis {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &hostileRedis{ln: ln, replies: [][]byte{
		bytes.Repeat([]byte("*1048576\r\n"), 64),
		bytes.Repeat([]byte("*1\r\n"), 5_000_000),
	}}
	var conns sync.Map
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Store(c, true)
			h.wg.Add(1)
			go func() {
				defer h.wg.Done()
				defer c.Close()
				h.serve(c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		conns.Range(func(k, _ any) bool { k.(net.Conn).Close(); return true })
		h.wg.Wait()
	})
	return h
}

func (h *hostileRedis) addr() string { return h.ln.Addr().String() }

func (h *hostileRedis) serve(c net.Conn) {
	br := bufio.NewReader(c)
	for {
		v, err := readValue(br)
		if err != nil {
			return
		}
		args, _ := v.([]any)
		if len(args) > 0 && strings.EqualFold(asString(args[0]), "ROLE") {
			n := h.roles.Add(1)
			_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Write(h.replies[int(n)%len(h.replies)]); err != nil {
				return // the watcher closed the connection, as it should
			}
			continue
		}
		if _, err := c.Write([]byte("+OK\r\n")); err != nil {
			return
		}
	}
}

// TestWatcherSurvivesHostileNode: a "Redis node" that answers ROLE with
// hostile replies is reported down with a protocol error, probed again and
// again without crashing the watcher or growing its memory, logged
// rate-limited, and does not disturb the real master's checks. Before the
// reply limits, the first reply cost 1 GiB and the second killed the
// process with a stack overflow.
func TestWatcherSurvivesHostileNode(t *testing.T) {
	master := redistest.StartServer(t, redistest.ServerOptions{})
	bad := startHostileRedis(t)
	cfg := DefaultConfig()
	cfg.Nodes = []string{master.Addr, bad.addr()}
	cfg.CheckInterval = 100 * time.Millisecond
	w, logs := startWatcher(t, cfg)

	testutil.Eventually(t, 10*time.Second, "real master confirmed, hostile node probed", func() bool {
		return w.Observation().Master == master.Addr && bad.roles.Load() >= 2
	})
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	rolesBefore := bad.roles.Load()
	masterCheck := time.Time{}
	if n, ok := nodeByAddr(w.Observation(), master.Addr); ok {
		masterCheck = n.LastCheck
	}
	testutil.Eventually(t, 20*time.Second, "hostile node answered 20 more ROLEs", func() bool {
		o := w.Observation()
		if o.Master != master.Addr {
			t.Fatalf("real master lost while the hostile node answers: %+v", o)
		}
		return bad.roles.Load() >= rolesBefore+20
	})
	runtime.ReadMemStats(&after)
	replies := bad.roles.Load() - rolesBefore
	perReply := (after.TotalAlloc - before.TotalAlloc) / uint64(replies)
	t.Logf("%d hostile replies: %d bytes allocated in all (%d per reply), heap in use %d -> %d KiB",
		replies, after.TotalAlloc-before.TotalAlloc, perReply, before.HeapInuse>>10, after.HeapInuse>>10)
	if perReply > 1<<20 {
		t.Errorf("allocated %d bytes per hostile reply, want well under 1 MiB", perReply)
	}

	o := w.Observation()
	n, _ := nodeByAddr(o, bad.addr())
	if n.Up || n.Role != RoleUnknown || !strings.Contains(n.LastError, "protocol error") {
		t.Errorf("hostile node state %+v: want down, role unknown, a protocol error", n)
	}
	if m, _ := nodeByAddr(o, master.Addr); !m.Up || !m.LastCheck.After(masterCheck) {
		t.Errorf("real master state %+v: want up and checked again", m)
	}
	if got := logs.count("node check failed", bad.addr()); got < 1 || got > 3 {
		t.Errorf("%d warn lines for the hostile node after %d failed checks, want 1 to 3 (rate-limited)", got, bad.roles.Load())
	}
}
