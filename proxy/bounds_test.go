package proxy

import (
	"bytes"
	"context"
	"net"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redhaven/redhaven/e2e/redistest"
	"github.com/redhaven/redhaven/e2e/testutil"
)

// bytesIn is what the proxy's listeners received so far.
func bytesIn(srv *Server) int64 {
	var n int64
	for _, l := range srv.Stats().Listeners {
		n += l.BytesIn
	}
	return n
}

// sessionsNow is how many client sessions the proxy holds.
func sessionsNow(srv *Server) int64 {
	var n int64
	for _, l := range srv.Stats().Listeners {
		n += l.CurrentSessions
	}
	return n
}

// TestBoundsDeclaredLength: a header announcing a 512 MiB value costs
// the bytes that arrived, not the length declared (issue 17: 15 such
// connections took 2.1 GB before AUTH, 24 after AUTH 5.8 GB).
func TestBoundsDeclaredLength(t *testing.T) {
	for _, tc := range []struct {
		name     string
		password string
		conns    int
	}{
		{"pass-through", "", 15},
		{"after-auth", "proxypw", 24},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs := redistest.StartServer(t, redistest.ServerOptions{})
			cfg := testConfig()
			cfg.Password = tc.password
			srv := startProxy(t, cfg, newRoutes(rs.Addr))
			settle()
			rss0, heap0 := memNow(t)
			sent := int64(0)
			for i := 0; i < tc.conns; i++ {
				c := dialRaw(t, srv.Addr().String())
				if tc.password != "" {
					c.do("+OK\r\n", "AUTH", tc.password)
					sent += int64(len(appendCommandStrings(nil, "AUTH", tc.password)))
				}
				c.write(bigSetHeader)
				sent += int64(len(bigSetHeader))
			}
			testutil.Eventually(t, 10*time.Second, "the proxy read every header", func() bool { return bytesIn(srv) >= sent })
			runtime.GC()
			rss1, heap1 := memNow(t)
			t.Logf("%d connections: RSS %+d MiB, heap in use %+d MiB", tc.conns, (rss1-rss0)>>20, (heap1-heap0)>>20)
			if heap1-heap0 > 64<<20 {
				t.Errorf("heap in use grew by %d MiB for %d bytes of headers, want < 64 MiB", (heap1-heap0)>>20, sent)
			}
			if rss0 > 0 && rss1-rss0 > 256<<20 {
				t.Errorf("RSS grew by %d MiB for %d bytes of headers, want < 256 MiB", (rss1-rss0)>>20, sent)
			}
			// the proxy still serves
			dialRaw(t, srv.Addr().String()).do(pingWant(tc.password), "PING")
		})
	}
}

func pingWant(password string) string {
	if password != "" {
		return ReplyNoAuth
	}
	return "+PONG\r\n"
}

// TestBoundsLocalReplies: the proxy's own answers count against the
// client output limits: a client that pipelines commands the proxy
// answers itself and never reads is closed, and memory stays bounded
// (issue 17: PING without AUTH, never read, 397 MB for 18.9 MB sent).
func TestBoundsLocalReplies(t *testing.T) {
	t.Run("ping-before-auth", func(t *testing.T) {
		rs := redistest.StartServer(t, redistest.ServerOptions{})
		cfg := testConfig()
		cfg.Password = "proxypw"
		srv := startProxy(t, cfg, newRoutes(rs.Addr))
		settle()
		_, heap0 := memNow(t)
		sent := pingFlood(t, srv.Addr().String(), pingCmd, 19<<20, 10*time.Second)
		testutil.Eventually(t, 10*time.Second, "the flooding client closed", func() bool { return sessionsNow(srv) == 0 })
		runtime.GC()
		_, heap1 := memNow(t)
		t.Logf("%d KiB sent: heap in use %+d KiB", sent>>10, (heap1-heap0)>>10)
		if heap1-heap0 > 32<<20 {
			t.Errorf("heap in use grew by %d MiB, want < 32 MiB", (heap1-heap0)>>20)
		}
	})
	t.Run("refused-after-auth", func(t *testing.T) {
		rs := redistest.StartServer(t, redistest.ServerOptions{})
		cfg := testConfig()
		cfg.ClientOutputLimit = 1 << 20
		srv := startProxy(t, cfg, newRoutes(rs.Addr))
		c, err := net.Dial("tcp", srv.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// commands the proxy refuses itself: its answers, never read
		chunk := bytes.Repeat(appendCommandStrings(nil, "REPLICAOF", "NO", "ONE"), 2048)
		for sent := 0; sent < 64<<20; sent += len(chunk) {
			_ = c.SetWriteDeadline(time.Now().Add(2 * time.Second))
			if _, err := c.Write(chunk); err != nil {
				break
			}
		}
		testutil.Eventually(t, 10*time.Second, "the client that does not read closed", func() bool { return sessionsNow(srv) == 0 })
		if n := srv.Stats().ClientsClosed["output_limit"]; n != 1 {
			t.Errorf("clients closed for output_limit = %d, want 1", n)
		}
	})
}

// TestBoundsProtocolErrors: lengths out of range get Redis's own error
// texts, and the connection is closed after the replies before them, as
// on a direct connection.
func TestBoundsProtocolErrors(t *testing.T) {
	rs := redistest.StartServer(t, redistest.ServerOptions{})
	srv := startProxy(t, testConfig(), newRoutes(rs.Addr))
	for _, tc := range []struct{ name, in, want string }{
		{"bulk-above-max", "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$536870913\r\n", "-ERR Protocol error: invalid bulk length\r\n"},
		{"multibulk-above-max", "*3000000000\r\n", "-ERR Protocol error: invalid multibulk length\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, target := range []struct{ name, addr string }{{"redis", rs.Addr}, {"proxy", srv.Addr().String()}} {
				c := dialRaw(t, target.addr)
				c.write("*1\r\n$4\r\nPING\r\n" + tc.in)
				c.expect("+PONG\r\n")
				if got := c.reply(); got != tc.want {
					t.Fatalf("%s: reply %q, want %q", target.name, got, tc.want)
				}
				c.expectClosed()
			}
		})
	}
}

// TestBoundsBufferBudget: beyond proxy.max_buffer_memory the largest
// consumer is disconnected, counted, and the others go on.
func TestBoundsBufferBudget(t *testing.T) {
	rs := redistest.StartServer(t, redistest.ServerOptions{})
	cfg := testConfig()
	cfg.MaxBufferMemory = 1 << 20
	srv := startProxy(t, cfg, newRoutes(rs.Addr))
	if got := srv.Stats().BufferLimit; got != 1<<20 {
		t.Fatalf("BufferLimit = %d, want %d", got, 1<<20)
	}
	small := dialRaw(t, srv.Addr().String())
	small.do("+PONG\r\n", "PING")
	// a big value sent but not finished: its bytes are buffered
	big := dialRaw(t, srv.Addr().String())
	big.write("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$4000000\r\n" + strings.Repeat("v", 1500<<10))
	testutil.Eventually(t, 10*time.Second, "the largest consumer closed", func() bool {
		return srv.Stats().ClientsClosed["buffer_memory"] == 1
	})
	if got := big.closedAfter(); got != "" && got != replyBufferMemory {
		t.Errorf("closed client got %q, want nothing or %q", got, replyBufferMemory)
	}
	small.do("+OK\r\n", "SET", "k", "v")
	testutil.Eventually(t, 5*time.Second, "BufferBytes back under the limit", func() bool { return srv.Stats().BufferBytes <= 1<<20 })
	if got, _ := rs.Client().Get(context.Background(), "k").Result(); got != "v" {
		t.Errorf("k = %q, want v", got)
	}
}

// closedAfter reads until the proxy closes the connection (fails if it
// does not) and returns what came before the close.
func (r *rawClient) closedAfter() string {
	r.t.Helper()
	var got string
	for i := 0; i < 4; i++ {
		s, err := r.replyWithin(5 * time.Second)
		if err != nil {
			if errEOFish(err) == err {
				return got + s
			}
			r.t.Fatalf("connection not closed: got %q, %v", got+s, err)
		}
		got += s
	}
	r.t.Fatalf("connection not closed: got %q", got)
	return got
}

// TestRequestReaderGrowsWithBytes: the read buffer follows the bytes that
// arrived: a header announcing a big value leaves it small, and the value
// arriving makes it about the value's size, not the next power of two.
func TestRequestReaderGrowsWithBytes(t *testing.T) {
	const size = 3 << 20
	r := newRequestReader(512 << 20)
	feed := func(p string) {
		for len(p) > 0 {
			sp := r.space()
			n := copy(sp, p)
			r.end += n
			p = p[n:]
			if _, _, err := r.peek(false); err != nil {
				t.Fatal(err)
			}
		}
	}
	header := "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$" + strconv.Itoa(size) + "\r\n"
	feed(header)
	if len(r.buf) > clientBufSize {
		t.Fatalf("after the header: buffer %d bytes, want <= %d", len(r.buf), clientBufSize)
	}
	feed(strings.Repeat("v", size/2))
	if len(r.buf) > size {
		t.Fatalf("half the value: buffer %d bytes, want <= %d", len(r.buf), size)
	}
	feed(strings.Repeat("v", size/2) + "\r\n")
	raw, _, err := r.peek(false)
	if err != nil || len(raw) != len(header)+size+2 {
		t.Fatalf("peek: %d bytes, %v", len(raw), err)
	}
	if len(r.buf) > size+16<<10 {
		t.Fatalf("whole value: buffer %d bytes, want about %d", len(r.buf), size)
	}
}
