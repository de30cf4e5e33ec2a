package proxy

import (
	"bytes"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redhaven/redhaven/e2e/redistest"
)

// bigSetHeader announces a 536,870,000-byte value and sends none of it:
// 45 bytes that made main (2ff7241) reserve 512 MiB per connection.
const bigSetHeader = "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$536870000\r\n"

// memNow is the process's resident memory (VmRSS) and Go heap in use.
func memNow(t testing.TB) (rss, heap int64) {
	t.Helper()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1, int64(ms.HeapInuse)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			rss = kb << 10
		}
	}
	return rss, int64(ms.HeapInuse)
}

// settle frees what the earlier steps left, so growth is measured from a
// clean base.
func settle() {
	runtime.GC()
	debug.FreeOSMemory()
}

// TestMeasureAttacks prints the memory the attacks of issue 17 cost the
// process the proxy runs in (REDHAVEN_MEASURE=1; a measurement, not a
// check: bounds_test.go has the checks).
//
//	REDHAVEN_MEASURE=1 go test -count=1 -v -run TestMeasureAttacks ./proxy
func TestMeasureAttacks(t *testing.T) {
	if os.Getenv("REDHAVEN_MEASURE") != "1" {
		t.Skip("a measurement: set REDHAVEN_MEASURE=1")
	}
	report := func(name string, rss0, heap0 int64) {
		time.Sleep(2 * time.Second) // a measurement: let the proxy read what was sent
		rss1, heap1 := memNow(t)
		t.Logf("%s: RSS %+d KiB (%d -> %d MiB), heap in use %+d KiB (%d -> %d MiB)", name,
			(rss1-rss0)>>10, rss0>>20, rss1>>20, (heap1-heap0)>>10, heap0>>20, heap1>>20)
	}
	t.Run("headers-without-auth", func(t *testing.T) {
		rs := redistest.StartServer(t, redistest.ServerOptions{})
		srv := startProxy(t, testConfig(), newRoutes(rs.Addr))
		settle()
		rss0, heap0 := memNow(t)
		for i := 0; i < 15; i++ {
			dialRaw(t, srv.Addr().String()).write(bigSetHeader)
		}
		report("15 connections, 45-byte header, no AUTH (pass-through)", rss0, heap0)
	})
	settle()
	t.Run("headers-after-auth", func(t *testing.T) {
		rs := redistest.StartServer(t, redistest.ServerOptions{})
		cfg := testConfig()
		cfg.Password = "proxypw"
		srv := startProxy(t, cfg, newRoutes(rs.Addr))
		settle()
		rss0, heap0 := memNow(t)
		for i := 0; i < 24; i++ {
			c := dialRaw(t, srv.Addr().String())
			c.do("+OK\r\n", "AUTH", "proxypw")
			c.write(bigSetHeader)
		}
		report("24 connections, AUTH then 45-byte header (proxy.password)", rss0, heap0)
	})
	settle()
	t.Run("ping-unread", func(t *testing.T) {
		rs := redistest.StartServer(t, redistest.ServerOptions{})
		cfg := testConfig()
		cfg.Password = "proxypw"
		srv := startProxy(t, cfg, newRoutes(rs.Addr))
		settle()
		rss0, heap0 := memNow(t)
		sent := pingFlood(t, srv.Addr().String(), pingCmd, 19<<20, 10*time.Second)
		report("PING pipelined without AUTH, never read, "+strconv.Itoa(sent>>10)+" KiB sent", rss0, heap0)
	})
	settle()
	t.Run("refused-unread", func(t *testing.T) {
		rs := redistest.StartServer(t, redistest.ServerOptions{})
		srv := startProxy(t, testConfig(), newRoutes(rs.Addr))
		settle()
		rss0, heap0 := memNow(t)
		sent := pingFlood(t, srv.Addr().String(), refusedCmd, 19<<20, 10*time.Second)
		report("REPLICAOF NO ONE (refused by the proxy) pipelined, never read, "+strconv.Itoa(sent>>10)+" KiB sent", rss0, heap0)
	})
}

var (
	pingCmd    = []byte("*1\r\n$4\r\nPING\r\n")
	refusedCmd = []byte("*3\r\n$9\r\nREPLICAOF\r\n$2\r\nNO\r\n$3\r\nONE\r\n")
)

// pingFlood sends cmd again and again on a new connection without
// reading, up to total bytes or until a write blocks for long or fails; it
// returns what was sent.
func pingFlood(t testing.TB, addr string, cmd []byte, total int, within time.Duration) int {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	chunk := bytes.Repeat(cmd, 4096)
	sent := 0
	deadline := time.Now().Add(within)
	for sent < total && time.Now().Before(deadline) {
		_ = c.SetWriteDeadline(time.Now().Add(time.Second))
		n, err := c.Write(chunk)
		sent += n
		if err != nil {
			break
		}
	}
	return sent
}

// TestMeasureBusyScript: how long a PING from a second client takes to
// get -BUSY when sent d after another client's EVAL 'while true do end'
// started (busy-reply-threshold 100 ms), directly and through the proxy.
func TestMeasureBusyScript(t *testing.T) {
	if os.Getenv("REDHAVEN_MEASURE") != "1" {
		t.Skip("a measurement: set REDHAVEN_MEASURE=1")
	}
	rs := redistest.StartServer(t, redistest.ServerOptions{Extra: []string{"--busy-reply-threshold", "100"}})
	srv := startProxy(t, testConfig(), newRoutes(rs.Addr))
	for _, via := range []string{"direct", "proxy"} {
		addr := rs.Addr
		if via == "proxy" {
			addr = srv.Addr().String()
		}
		for _, d := range []time.Duration{10 * time.Millisecond, 30 * time.Millisecond, 50 * time.Millisecond, 150 * time.Millisecond, 300 * time.Millisecond, 600 * time.Millisecond, 1200 * time.Millisecond} {
			busy, other := dialRaw(t, addr), dialRaw(t, addr)
			busy.do("+PONG\r\n", "PING")
			other.do("+PONG\r\n", "PING")
			busy.send("EVAL", "while true do end", "0")
			time.Sleep(d)
			start := time.Now()
			other.send("PING")
			got, err := other.replyWithin(3 * time.Second)
			took := time.Since(start)
			killer := dialRaw(t, rs.Addr) // directly: the measurement is the PING's
			killer.send("SCRIPT", "KILL")
			killer.reply()
			busy.reply()
			if err != nil {
				t.Logf("%s, PING %v after EVAL: no answer in %v (%v)", via, d, took.Round(time.Millisecond), err)
				other.reply() // answered once the script ended
				continue
			}
			t.Logf("%s, PING %v after EVAL: %q in %v", via, d, firstLine([]byte(got)), took.Round(time.Millisecond))
		}
	}
	t.Logf("shared connections found stalled: %d", srv.muxStalls.Load())
}
