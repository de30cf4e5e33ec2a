package proxy

import (
	"context"
	"net"
	"net/netip"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/redhaven/redhaven/e2e/loadgen"
	"github.com/redhaven/redhaven/e2e/redistest"
	"github.com/redhaven/redhaven/e2e/testutil"
)

// seqpacketPair is the hand-over socket: two connected SOCK_SEQPACKET ends.
func seqpacketPair(t *testing.T) (a, b *net.UnixConn) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_SEQPACKET|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) *net.UnixConn {
		f := os.NewFile(uintptr(fd), "handover")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c.(*net.UnixConn)
	}
	return conn(fds[0]), conn(fds[1])
}

// handOverTo hands srv's listeners and sessions to a new server over a
// Unix socket, as two processes do, and runs the new one.
func handOverTo(t *testing.T, srv *Server, stopOld func() error, cfg Config, routes RouteSource) (*Server, func() error) {
	t.Helper()
	h, err := srv.HandOver(time.Now().Add(3 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if err := stopOld(); err != nil {
		t.Fatal(err)
	}
	a, b := seqpacketPair(t)
	sent := make(chan error, 1)
	go func() { sent <- SendHandoff(a, h) }()
	got, err := ReceiveHandoff(b)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	h.Close()
	if len(got.Sessions) != len(h.Sessions) || len(got.Listeners) != len(h.Listeners) {
		t.Fatalf("received %d sessions and %d listeners, sent %d and %d", len(got.Sessions), len(got.Listeners), len(h.Sessions), len(h.Listeners))
	}
	next, err := NewFromHandoff(cfg, routes, testLogger(t), got)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- next.Run(ctx) }()
	stop := func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Second):
			t.Error("Run did not return")
			return nil
		}
	}
	return next, stop
}

// A client connection survives hand-overs under a pipelined load (split
// writes: partial commands cross over) and gets every reply in order; a
// session keeps its SELECT and CLIENT SETNAME, a subscriber its
// subscription.
func TestHandoverPipelined(t *testing.T) {
	rs := redistest.StartServer(t, redistest.ServerOptions{})
	routes := newRoutes(rs.Addr)
	cfg := testConfig()
	srv, stop := runProxy(t, cfg, routes)
	addr := srv.Addr().String()

	state := dialRaw(t, addr)
	state.do("+OK\r\n", "SELECT", "3")
	state.do("+OK\r\n", "CLIENT", "SETNAME", "ho-client")
	state.do("+OK\r\n", "SET", "hokey", "in-db-3")
	sub := dialRaw(t, addr)
	sub.send("SUBSCRIBE", "hoch")
	sub.expect("*3\r\n" + bulk("subscribe") + bulk("hoch") + ":1\r\n")

	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Second)
	defer cancel()
	loadDone := make(chan loadgen.Result, 1)
	go func() {
		loadDone <- loadgen.Run(ctx, loadgen.Options{Addr: addr, Conns: 4, Pipeline: 16, Setup: [][]string{{"SELECT", "2"}}})
	}()
	// a partial command read by the first process, completed for the next
	partial := string(appendCommandStrings(nil, "GET", "hokey"))
	state.write(partial[:12])
	for i := range 3 {
		time.Sleep(time.Second)
		start := time.Now()
		srv, stop = handOverTo(t, srv, stop, cfg, routes)
		t.Logf("hand-over %d took %s", i+1, time.Since(start).Round(time.Microsecond))
	}
	state.write(partial[12:])
	state.expect(bulk("in-db-3"))
	res := <-loadDone
	t.Logf("load: %s", res)
	if res.Drops != 0 || res.Misordered != 0 || res.Replies < 100 {
		t.Fatalf("load across 3 hand-overs: %s %v", res, res.Errors)
	}
	if res.MaxPause > 2*time.Second {
		t.Errorf("longest pause %s", res.MaxPause)
	}

	state.do(bulk("ho-client"), "CLIENT", "GETNAME")
	state.do(bulk("in-db-3"), "GET", "hokey")
	rc := rs.Client()
	deadline := time.Now().Add(5 * time.Second)
	for {
		n, err := rc.Publish(context.Background(), "hoch", "after").Result()
		if err == nil && n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("subscription not restored: %d receivers, %v", n, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	sub.expect("*3\r\n" + bulk("message") + bulk("hoch") + bulk("after"))
	if err := stop(); err != nil {
		t.Error(err)
	}
}

// A blocking command answered before the deadline, and a transaction that
// ends soon, cross over; a blocking command that is never answered is
// closed at the deadline.
func TestHandoverBoundaries(t *testing.T) {
	rs := redistest.StartServer(t, redistest.ServerOptions{})
	routes := newRoutes(rs.Addr)
	cfg := testConfig()
	srv, stop := runProxy(t, cfg, routes)
	addr := srv.Addr().String()

	blk1 := dialRaw(t, addr)
	blk1.send("BLPOP", "ho-empty-1", "1")
	blk0 := dialRaw(t, addr)
	blk0.send("BLPOP", "ho-empty-0", "0")
	tx := dialRaw(t, addr)
	tx.do("+OK\r\n", "MULTI")
	tx.do("+QUEUED\r\n", "SET", "ho-tx", "1")
	// Both BLPOPs must be in flight (blocked in Redis): a BLPOP still
	// unread in the socket (a loaded machine) would cross over as input.
	testutil.Eventually(t, 10*time.Second, "both BLPOPs blocked in redis", func() bool {
		return infoField(t, rs.Client(), "clients", "blocked_clients") == "2"
	})
	go func() {
		time.Sleep(300 * time.Millisecond)
		tx.send("EXEC")
	}()
	start := time.Now()
	srv, stop = handOverTo(t, srv, stop, cfg, routes)
	took := time.Since(start)
	if took < 900*time.Millisecond || took > 8*time.Second {
		t.Errorf("hand-over took %s: it should wait for BLPOP 1 and end at the 3 s deadline", took)
	}
	blk1.expect("*-1\r\n")
	blk1.do("+PONG\r\n", "PING")
	tx.expect("*1\r\n+OK\r\n")
	tx.do("+PONG\r\n", "PING")
	blk0.expectClosed()
	if err := stop(); err != nil {
		t.Error(err)
	}
}

// Idle (parked) sessions cross over too, in several hand-over messages.
func TestHandoverIdle(t *testing.T) {
	rs := redistest.StartServer(t, redistest.ServerOptions{})
	routes := newRoutes(rs.Addr)
	cfg := testConfig()
	cfg.MaxClientsPerIP = 1000
	srv, stop := runProxy(t, cfg, routes)
	addr := srv.Addr().String()
	const n = 300 // > 4 messages of 64 descriptors
	clients := make([]*rawClient, n)
	for i := range clients {
		clients[i] = dialRaw(t, addr)
		clients[i].do("+PONG\r\n", "PING")
	}
	time.Sleep(1500 * time.Millisecond) // parkSweep twice: idle sessions park
	t.Logf("%d of %d sessions parked before the hand-over", srv.listeners()[0].parked.Load(), n)
	start := time.Now()
	srv, stop = handOverTo(t, srv, stop, cfg, routes)
	t.Logf("hand-over of %d idle sessions took %s", n, time.Since(start).Round(time.Microsecond))
	for _, c := range clients {
		c.do("+PONG\r\n", "PING")
	}
	if got := srv.listeners()[0].cur.Load(); got != n {
		t.Errorf("%d sessions counted on the new server, want %d", got, n)
	}
	srv.perIP.mu.Lock()
	perIP := srv.perIP.n[netip.MustParseAddr("127.0.0.1")]
	srv.perIP.mu.Unlock()
	if perIP != n {
		t.Errorf("%d clients of 127.0.0.1 counted for max_clients_per_ip on the new server, want %d", perIP, n)
	}
	if err := stop(); err != nil {
		t.Error(err)
	}
}

// proxy.multiplex turned on by the restart: a session with a SELECT keeps
// a connection of its own (a shared one would lose its database).
func TestHandoverMultiplexTurnedOn(t *testing.T) {
	rs := redistest.StartServer(t, redistest.ServerOptions{})
	routes := newRoutes(rs.Addr)
	cfg := testConfig()
	cfg.Multiplex = false
	srv, stop := runProxy(t, cfg, routes)
	state := dialRaw(t, srv.Addr().String())
	state.do("+OK\r\n", "SELECT", "5")
	state.do("+OK\r\n", "SET", "ho-mux", "db5")
	cfg.Multiplex = true
	_, stop = handOverTo(t, srv, stop, cfg, routes)
	state.do(bulk("db5"), "GET", "ho-mux")
	if err := stop(); err != nil {
		t.Error(err)
	}
}
