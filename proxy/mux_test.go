package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redhaven/redhaven/e2e/redistest"
	"github.com/redis/go-redis/v9"
)

func muxConfig() Config {
	cfg := testConfig()
	cfg.Multiplex = true
	return cfg
}

// connectedClients is Redis's own count of client connections (the one
// asking included).
func connectedClients(t testing.TB, rs *redistest.Server) int {
	t.Helper()
	n, err := strconv.Atoi(infoField(t, rs.Client(), "clients", "connected_clients"))
	if err != nil {
		t.Fatalf("INFO clients: %v", err)
	}
	return n
}

// script is one client's pipelined commands and the exact bytes Redis
// must answer, in order.
type script struct {
	req, want []byte
}

func (sc *script) add(want string, args ...string) {
	sc.req = appendCommandStrings(sc.req, args...)
	sc.want = append(sc.want, want...)
}

// run writes the whole script in one write and reads exactly the expected
// number of bytes; it returns an error naming the first difference.
func (sc *script) run(addr string, timeout time.Duration) error {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	errc := make(chan error, 1)
	go func() { _, err := c.Write(sc.req); errc <- err }()
	got := make([]byte, len(sc.want))
	_, rerr := io.ReadFull(bufio.NewReader(c), got)
	if err := <-errc; err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if string(got) != string(sc.want) {
		i := 0
		for i < len(got) && got[i] == sc.want[i] {
			i++
		}
		lo := max(0, i-40)
		return fmt.Errorf("replies differ at byte %d: got %q, want %q (read error %v)",
			i, got[lo:min(len(got), i+60)], sc.want[lo:min(len(sc.want), i+60)], rerr)
	}
	return nil
}

// TestMuxSharesConnections: RESP2 and RESP3 (go-redis HELLO 3) clients
// share a connection per protocol, and every client gets its own replies
// in order.
func TestMuxSharesConnections(t *testing.T) {
	rs := redistest.StartServer(t, redistest.ServerOptions{})
	srv := startProxy(t, muxConfig(), newRoutes(rs.Addr))
	addr := srv.Addr().String()
	const clients, rounds = 30, 40
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 2*clients)
	hold := make(chan struct{})
	for i := range clients {
		wg.Add(2)
		go func() { // RESP2, raw
			defer wg.Done()
			var sc script
			key := fmt.Sprintf("mux:raw:%d", i)
			sc.add("+OK\r\n", "SET", key, "0")
			for k := 1; k <= rounds; k++ {
				sc.add(fmt.Sprintf(":%d\r\n", k), "INCR", key)
				sc.add(bulk(key), "ECHO", key)
			}
			if err := sc.run(addr, 20*time.Second); err != nil {
				errs <- fmt.Errorf("raw client %d: %w", i, err)
			}
		}()
		go func() { // RESP3, go-redis (HELLO 3 first)
			defer wg.Done()
			c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, PoolSize: 1})
			defer c.Close()
			key := fmt.Sprintf("mux:r3:%d", i)
			for k := 1; k <= rounds; k++ {
				p := c.Pipeline()
				incr := p.Incr(ctx, key)
				hget := p.HGetAll(ctx, key+":h") // a map reply in RESP3
				if _, err := p.Exec(ctx); err != nil {
					errs <- fmt.Errorf("go-redis client %d: %w", i, err)
					return
				}
				if incr.Val() != int64(k) || len(hget.Val()) != 0 {
					errs <- fmt.Errorf("go-redis client %d: INCR = %d, want %d", i, incr.Val(), k)
					return
				}
				if k == rounds/2 {
					<-hold // all connected: count Redis's connections
				}
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	// The fewest of a few samples: a stall probe (a fresh connection
	// that PINGs and closes, muxstall.go) may be open at any one moment
	// on a loaded machine; a shared connection too many is in every one.
	n := connectedClients(t, rs)
	for i := 0; i < 5; i++ {
		time.Sleep(20 * time.Millisecond)
		n = min(n, connectedClients(t, rs))
	}
	close(hold)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// one shared connection per protocol, plus the INFO client
	if n > 3 {
		t.Errorf("redis saw %d connections during %d proxy clients, want <= 3 (2 shared + INFO)", n, 2*clients)
	}
	st := srv.Stats()
	if st.Listeners[0].MovedToOwn != 0 {
		t.Errorf("%d sessions moved to their own connection, want 0 (plain commands, HELLO 3 only)", st.Listeners[0].MovedToOwn)
	}
}

// TestMuxInterleavesStateful: many clients on shared connections switch,
// in the middle of one pipelined write, to commands that need their own
// connection; every reply reaches the right client in order, and nothing
// sent before the switch runs after what follows it.
func TestMuxInterleavesStateful(t *testing.T) {
	rs := redistest.StartServer(t, redistest.ServerOptions{})
	srv := startProxy(t, muxConfig(), newRoutes(rs.Addr))
	addr := srv.Addr().String()
	// CLIENT SETINFO is new in Redis 7.2: expect what this Redis answers
	setinfo := "+OK\r\n"
	if err := rs.Client().Do(context.Background(), "CLIENT", "SETINFO", "LIB-NAME", "muxtest").Err(); err != nil {
		setinfo = "-" + err.Error() + "\r\n"
	}
	const clients = 40
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var sc script
			key := fmt.Sprintf("mix:%d", i)
			sc.add("+OK\r\n", "SET", key, "0")
			for k := 1; k <= 20; k++ {
				sc.add(fmt.Sprintf(":%d\r\n", k), "INCR", key)
			}
			n := 20
			switch i % 6 {
			case 0: // transaction
				sc.add("+OK\r\n", "MULTI")
				sc.add("+QUEUED\r\n", "INCR", key)
				sc.add("+QUEUED\r\n", "GET", key)
				sc.add(fmt.Sprintf("*2\r\n:%d\r\n%s", n+1, bulk(strconv.Itoa(n+1))), "EXEC")
				n++
			case 1: // another database, and back
				sc.add("+OK\r\n", "SELECT", "1")
				sc.add("$-1\r\n", "GET", key)
				sc.add("+OK\r\n", "SELECT", "0")
			case 2: // a blocking command
				sc.add("*-1\r\n", "BLPOP", key+":list", "0.05")
			case 3: // pub/sub and back
				sc.add("*3\r\n$9\r\nsubscribe\r\n"+bulk(key+":ch")+":1\r\n", "SUBSCRIBE", key+":ch")
				sc.add("*3\r\n$11\r\nunsubscribe\r\n"+bulk(key+":ch")+":0\r\n", "UNSUBSCRIBE", key+":ch")
			case 4: // connection name
				sc.add("+OK\r\n", "CLIENT", "SETNAME", "n"+strconv.Itoa(i))
				sc.add(bulk("n"+strconv.Itoa(i)), "CLIENT", "GETNAME")
			case 5: // stays on the shared connection
				sc.add(setinfo, "CLIENT", "SETINFO", "LIB-NAME", "muxtest")
				sc.add("$-1\r\n", "GET", key+":none")
			}
			for k := n + 1; k <= n+20; k++ {
				sc.add(fmt.Sprintf(":%d\r\n", k), "INCR", key)
			}
			sc.add(bulk(strconv.Itoa(n+20)), "GET", key)
			if err := sc.run(addr, 30*time.Second); err != nil {
				errs <- fmt.Errorf("client %d (case %d): %w", i, i%6, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	moved := srv.Stats().Listeners[0].MovedToOwn
	if want := int64(clients - clients/6); moved < want-1 || moved > want {
		t.Errorf("MovedToOwn = %d, want about %d (every client but the CLIENT SETINFO ones)", moved, want)
	}
}

// TestOwnConnCommands: each command of ownConnTable, and each forwarded
// special command, moves a session off the shared connection; plain
// commands and HELLO 3 do not.
func TestOwnConnCommands(t *testing.T) {
	rs := redistest.StartServer(t, redistest.ServerOptions{})
	srv := startProxy(t, muxConfig(), newRoutes(rs.Addr))
	addr := srv.Addr().String()
	cases := []struct {
		args []string
		move bool
	}{
		{[]string{"GET", "k"}, false},
		{[]string{"EVAL", "return 1", "0"}, false},
		{[]string{"HELLO", "3"}, false},
		{[]string{"HELLO"}, false},
		{[]string{"CLIENT", "SETINFO", "LIB-VER", "1.0"}, false},
		{[]string{"PING"}, false},
		{[]string{"BLPOP", "l", "0.01"}, true},
		{[]string{"BRPOP", "l", "0.01"}, true},
		{[]string{"BLMOVE", "l", "m", "LEFT", "LEFT", "0.01"}, true},
		{[]string{"BZPOPMIN", "z", "0.01"}, true},
		{[]string{"XREAD", "STREAMS", "s", "0"}, true},
		{[]string{"WAIT", "0", "1"}, true},
		{[]string{"SELECT", "0"}, true},
		{[]string{"MULTI"}, true},
		{[]string{"WATCH", "k"}, true},
		{[]string{"CLIENT", "ID"}, true},
		{[]string{"CLIENT", "SETNAME", "x"}, true},
		{[]string{"HELLO", "3", "SETNAME", "x"}, true},
		{[]string{"SUBSCRIBE", "c"}, true},
		{[]string{"READONLY"}, true},
	}
	for _, tc := range cases {
		before := srv.Stats().Listeners[0].MovedToOwn
		r := dialRaw(t, addr)
		r.send(tc.args...)
		if s := r.reply(); strings.HasPrefix(s, "-ERR unknown") && tc.args[0] != "CLIENT" {
			t.Errorf("%v: %q", tc.args, s)
		}
		moved := srv.Stats().Listeners[0].MovedToOwn - before
		if (moved == 1) != tc.move {
			t.Errorf("%v: moved to own connection = %v, want %v", tc.args, moved == 1, tc.move)
		}
		r.c.Close()
	}
	// every own plain row of the table is tested above or is a blocking variant
	for _, c := range specialCommands {
		if c.class != classOwn || c.kind != cmdPlain || c.deny || strings.Contains(c.name, "|") {
			continue
		}
		if got := lookupCommand([]byte(strings.ToUpper(c.name))); !got.own || got.kind != cmdPlain {
			t.Errorf("lookupCommand(%q) = %+v, want own plain", c.name, got)
		}
	}
}

// TestMuxSlowClient: a client that pipelines big replies and never reads
// them does not hold up the others on the shared connection; once its
// backlog passes proxy.client_output_limit it is closed.
func TestMuxSlowClient(t *testing.T) {
	rs := redistest.StartServer(t, redistest.ServerOptions{})
	cfg := muxConfig()
	cfg.ClientOutputLimit = 1 << 20
	srv := startProxy(t, cfg, newRoutes(rs.Addr))
	addr := srv.Addr().String()
	big := strings.Repeat("v", 256<<10)
	if err := rs.Client().Set(context.Background(), "big", big, 0).Err(); err != nil {
		t.Fatal(err)
	}
	slow, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	if tc, ok := slow.(*net.TCPConn); ok {
		_ = tc.SetReadBuffer(4096)
	}
	var req []byte
	for range 64 { // 16 MiB of replies
		req = appendCommandStrings(req, "GET", "big")
	}
	if _, err := slow.Write(req); err != nil {
		t.Fatal(err)
	}
	// meanwhile a normal client on the same shared connection
	fast := dialRaw(t, addr)
	start := time.Now()
	for k := 1; k <= 200; k++ {
		fast.do(fmt.Sprintf(":%d\r\n", k), "INCR", "fast")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("200 round trips beside a stalled client took %v", d)
	}
	// the slow one is closed once over the limit: only the fast one is left
	deadline := time.Now().Add(10 * time.Second)
	for srv.Stats().Listeners[0].CurrentSessions != 1 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := srv.Stats().Listeners[0].CurrentSessions; n != 1 {
		t.Fatalf("%d sessions, want 1: the slow client was not closed", n)
	}
	fast.do(":201\r\n", "INCR", "fast")
}

// TestMuxMasterKilled: clients pipelining on a shared connection when the
// master dies get, for each command in flight, the usual "outcome unknown"
// error in order, keep their connection, and go on on the new master.
func TestMuxMasterKilled(t *testing.T) {
	a := redistest.StartServer(t, redistest.ServerOptions{})
	b := redistest.StartServer(t, redistest.ServerOptions{})
	routes := newRoutes(a.Addr)
	srv := startProxy(t, muxConfig(), routes)
	addr := srv.Addr().String()
	const clients = 10
	type result struct {
		ok, lost, down int
		err            error
	}
	results := make(chan result, clients)
	stop := make(chan struct{})
	for i := range clients {
		go func() {
			var res result
			defer func() { results <- res }()
			c, err := net.Dial("tcp", addr)
			if err != nil {
				res.err = err
				return
			}
			defer c.Close()
			rd := bufio.NewReader(c)
			var req []byte
			for range 8 {
				req = appendCommandStrings(req, "INCR", fmt.Sprintf("k:%d", i))
			}
			deadline := time.Now().Add(20 * time.Second)
			for time.Now().Before(deadline) {
				select {
				case <-stop:
					return
				default:
				}
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				if _, err := c.Write(req); err != nil {
					res.err = err
					return
				}
				for range 8 {
					line, err := rd.ReadString('\n')
					if err != nil {
						res.err = fmt.Errorf("connection lost: %w", err)
						return
					}
					switch {
					case line[0] == ':':
						res.ok++
					case strings.HasPrefix(line, ReplyLostMaster[:len(ReplyLostMaster)-2]):
						res.lost++
					case strings.HasPrefix(line, "-MASTERDOWN"), strings.HasPrefix(line, "-READONLY"):
						res.down++
					default:
						res.err = fmt.Errorf("unexpected reply %q", line)
						return
					}
				}
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	a.Kill()
	time.Sleep(100 * time.Millisecond)
	routes.Set(b.Addr)
	time.Sleep(500 * time.Millisecond)
	before := b.Client().DBSize(context.Background()).Val()
	time.Sleep(300 * time.Millisecond)
	close(stop)
	lost := 0
	for range clients {
		r := <-results
		if r.err != nil {
			t.Errorf("client: %v (ok %d, lost %d)", r.err, r.ok, r.lost)
		}
		lost += r.lost
	}
	if before == 0 {
		t.Errorf("no writes reached the new master")
	}
	t.Logf("in-flight commands answered as lost: %d", lost)
}

// TestDeepPipelineNoHeadOfLine: a client that pipelines many large GETs
// and reads nothing must not hold up another client of the same shared
// connection behind its replies: past a bound it takes a connection of its
// own (after the replies to what it sent on the shared one), and its own
// replies stay in order.
func TestDeepPipelineNoHeadOfLine(t *testing.T) {
	rs := redistest.StartServer(t, redistest.ServerOptions{})
	big := strings.Repeat("x", 64<<10)
	if err := rs.Client().Set(context.Background(), "big", big, 0).Err(); err != nil {
		t.Fatal(err)
	}
	multiplexModes(t, func(t *testing.T, multiplex bool) {
		cfg := testConfig()
		cfg.Multiplex = multiplex
		srv := startProxy(t, cfg, newRoutes(rs.Addr))
		addr := srv.Addr().String()
		// the other client first, so that both share a connection
		other := dialRaw(t, addr)
		other.do(":1\r\n", "INCR", "hol-"+fmt.Sprint(multiplex))
		slow, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer slow.Close()
		const n = 1000 // 64 MiB of replies, not read for now
		var req []byte
		for range n / 100 {
			req = req[:0]
			for range 100 {
				req = appendCommandStrings(req, "GET", "big")
			}
			_ = slow.SetWriteDeadline(time.Now().Add(10 * time.Second))
			if _, err := slow.Write(req); err != nil {
				t.Fatal(err)
			}
		}
		var slowest time.Duration
		for k := 2; k <= 21; k++ {
			start := time.Now()
			other.send("INCR", "hol-"+fmt.Sprint(multiplex))
			if got, err := other.replyWithin(60 * time.Second); err != nil || got != fmt.Sprintf(":%d\r\n", k) {
				t.Fatalf("INCR beside a client that does not read: %q, %v", got, err)
			}
			slowest = max(slowest, time.Since(start))
		}
		t.Logf("slowest INCR beside a client pipelining %d GETs of 64 KiB: %v (moved by the bounds: %d)",
			n, slowest.Round(time.Millisecond), srv.movedDeep.Load())
		if multiplex && srv.movedDeep.Load() != 1 {
			t.Errorf("%d sessions moved to their own connection, want 1 (the one that does not read)", srv.movedDeep.Load())
		}
		// Generous: Redis itself is busy with the 64 MiB (1:1 took
		// 2.6-2.7 s at load average 48 under -race, mux 3.0-3.4 s); before
		// the move the INCRs waited behind those replies on the shared
		// connection (19.6 s at that load).
		if slowest > 5*time.Second {
			t.Errorf("slowest INCR took %v beside a client that does not read", slowest)
		}
		// the slow reader's replies are all there, in order
		rd := bufio.NewReaderSize(slow, 1<<20)
		want := bulk(big)
		got := make([]byte, len(want))
		_ = slow.SetReadDeadline(time.Now().Add(60 * time.Second))
		for i := range n {
			if _, err := io.ReadFull(rd, got); err != nil {
				t.Fatalf("reply %d: %v", i, err)
			}
			if string(got) != want {
				t.Fatalf("reply %d differs: %q", i, got[:min(len(got), 40)])
			}
		}
	})
}

// TestDeepPipelineMoveKeepsReplies: the replies a session waits for on
// the shared connection it leaves (a deep pipeline) are not cut off at
// hold_timeout while they keep coming: the server is still the master.
func TestDeepPipelineMoveKeepsReplies(t *testing.T) {
	rs := redistest.StartServer(t, redistest.ServerOptions{})
	big := strings.Repeat("y", 64<<10)
	if err := rs.Client().Set(context.Background(), "big", big, 0).Err(); err != nil {
		t.Fatal(err)
	}
	cfg := muxConfig()
	cfg.HoldTimeout = time.Millisecond // far less than 8 MiB of replies take
	srv := startProxy(t, cfg, newRoutes(rs.Addr))
	r := dialRaw(t, srv.Addr().String())
	// pipelines up to the bound (read before the next) stay shared; one
	// more command would move it (checked by hand: moved 1)
	var ping []byte
	for range muxMaxDue {
		ping = appendCommandStrings(ping, "PING")
	}
	for range 3 {
		r.write(string(ping))
		for range muxMaxDue {
			r.expect("+PONG\r\n")
		}
	}
	if m := srv.movedDeep.Load(); m != 0 {
		t.Fatalf("moved by the bounds after pipelines of %d: %d, want 0", muxMaxDue, m)
	}
	const n = 400
	var req []byte
	for range n {
		req = appendCommandStrings(req, "GET", "big")
	}
	r.write(string(req))
	want := bulk(big)
	got := make([]byte, len(want))
	_ = r.c.SetReadDeadline(time.Now().Add(30 * time.Second))
	for i := range n {
		if _, err := io.ReadFull(r.rd, got[:1]); err != nil {
			t.Fatalf("reply %d: %v", i, err)
		}
		if got[0] != '$' { // an error: "connection to master lost"
			line, _ := r.rd.ReadString('\n')
			t.Fatalf("reply %d: %q", i, string(got[:1])+line)
		}
		if _, err := io.ReadFull(r.rd, got[1:]); err != nil || string(got) != want {
			t.Fatalf("reply %d: %q, %v", i, got[:min(len(got), 40)], err)
		}
	}
	if m := srv.movedDeep.Load(); m != 1 {
		t.Errorf("moved by the bounds: %d, want 1", m)
	}
}
