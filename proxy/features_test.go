package proxy

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/redhaven/redhaven/e2e/redistest"
	"github.com/redhaven/redhaven/e2e/testutil"
	"github.com/redis/go-redis/v9"
)

func TestTransactions(t *testing.T) {
	rs := redistest.StartServer(t, redistest.ServerOptions{})
	srv := startProxy(t, testConfig(), newRoutes(rs.Addr))
	ctx := context.Background()
	c := proxyClient(t, srv.Addr().String(), nil)

	cmds, err := c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, "tx1", "a", 0)
		p.Incr(ctx, "tx2")
		return nil
	})
	if err != nil || len(cmds) != 2 || cmds[1].(*redis.IntCmd).Val() != 1 {
		t.Fatalf("MULTI/EXEC: %v %v", cmds, err)
	}
	// WATCH with a conflicting write from another client: EXEC returns nil
	other := rs.Client()
	err = c.Watch(ctx, func(tx *redis.Tx) error {
		if err := other.Set(ctx, "watched", "changed", 0).Err(); err != nil {
			return err
		}
		_, err := tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Set(ctx, "watched", "mine", 0)
			return nil
		})
		return err
	}, "watched")
	if !errors.Is(err, redis.TxFailedErr) {
		t.Fatalf("WATCH conflict: err = %v, want TxFailedErr", err)
	}
	// a refused command inside MULTI aborts the transaction, as in Redis
	r := dialRaw(t, srv.Addr().String())
	r.do("+OK\r\n", "MULTI")
	r.do("+QUEUED\r\n", "SET", "dirty", "1")
	r.do(lookupCommand([]byte("debug")).refuse, "DEBUG", "SLEEP", "0")
	r.do(ReplyExecAbortDirty, "EXEC")
	if n, _ := other.Exists(ctx, "dirty").Result(); n != 0 {
		t.Fatalf("aborted transaction ran")
	}
}

func TestBlockingCommand(t *testing.T) {
	rs := redistest.StartServer(t, redistest.ServerOptions{})
	srv := startProxy(t, testConfig(), newRoutes(rs.Addr))
	r := dialRaw(t, srv.Addr().String())
	r.send("BLPOP", "bl", "0")
	testutil.Eventually(t, 5*time.Second, "client blocked", func() bool {
		return infoField(t, rs.Client(), "clients", "blocked_clients") == "1"
	})
	if err := rs.Client().RPush(context.Background(), "bl", "x").Err(); err != nil {
		t.Fatal(err)
	}
	r.expect("*2\r\n" + bulk("bl") + bulk("x"))
	r.do("+PONG\r\n", "PING")
}

func TestPubSub(t *testing.T) {
	rs := redistest.StartServer(t, redistest.ServerOptions{})
	srv := startProxy(t, testConfig(), newRoutes(rs.Addr))
	ctx := context.Background()
	for _, proto := range []int{2, 3} {
		t.Run(fmt.Sprintf("resp%d", proto), func(t *testing.T) {
			c := proxyClient(t, srv.Addr().String(), &redis.Options{Protocol: proto})
			ch := fmt.Sprintf("chan%d", proto)
			ps := c.Subscribe(ctx, ch)
			defer ps.Close()
			if err := ps.PSubscribe(ctx, fmt.Sprintf("pat%d.*", proto)); err != nil {
				t.Fatal(err)
			}
			// both confirmations arrived
			for i := 0; i < 2; i++ {
				if _, err := ps.ReceiveTimeout(ctx, 5*time.Second); err != nil {
					t.Fatalf("confirmation: %v", err)
				}
			}
			pub := rs.Client()
			for i := 0; i < 50; i++ {
				pub.Publish(ctx, ch, fmt.Sprint("m", i))
				pub.Publish(ctx, fmt.Sprintf("pat%d.x", proto), fmt.Sprint("p", i))
			}
			for i := 0; i < 100; i++ {
				msg, err := ps.ReceiveTimeout(ctx, 5*time.Second)
				if err != nil {
					t.Fatalf("message %d: %v", i, err)
				}
				m, ok := msg.(*redis.Message)
				if !ok {
					t.Fatalf("got %T %v, want a message", msg, msg)
				}
				want := fmt.Sprint("m", i/2)
				if i%2 == 1 {
					want = fmt.Sprint("p", i/2)
				}
				if m.Payload != want {
					t.Fatalf("message %d = %q, want %q", i, m.Payload, want)
				}
			}
			// PING in subscribed mode, then unsubscribe everything
			if err := ps.Ping(ctx); err != nil {
				t.Fatal(err)
			}
			if err := ps.Unsubscribe(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
	t.Run("raw-unsubscribe-all", func(t *testing.T) {
		r := dialRaw(t, srv.Addr().String())
		r.send("SUBSCRIBE", "a", "b", "c")
		for _, ch := range []string{"a", "b", "c"} {
			r.reply()
			_ = ch
		}
		r.send("UNSUBSCRIBE")
		for i := 0; i < 3; i++ {
			if got := r.reply(); !strings.Contains(got, "unsubscribe") {
				t.Fatalf("unsubscribe reply %q", got)
			}
		}
		r.do("+PONG\r\n", "PING") // back to normal mode: one reply per command
		r.do("$-1\r\n", "GET", "nothing")
	})
}

func TestClientReply(t *testing.T) {
	rs := redistest.StartServer(t, redistest.ServerOptions{})
	srv := startProxy(t, testConfig(), newRoutes(rs.Addr))
	r := dialRaw(t, srv.Addr().String())
	r.send("CLIENT", "REPLY", "OFF")
	r.send("SET", "cr", "1")
	r.send("SHUTDOWN") // refused, and silent
	r.send("INCR", "cr")
	r.do("+OK\r\n", "CLIENT", "REPLY", "ON")
	r.do(bulk("2"), "GET", "cr")
	r.send("CLIENT", "REPLY", "SKIP")
	r.send("SET", "cr", "3") // skipped
	r.do(bulk("3"), "GET", "cr")
	// pipelined mix
	r.write(string(appendCommandStrings(nil, "CLIENT", "REPLY", "SKIP")) + string(appendCommandStrings(nil, "INCR", "cr")) + string(appendCommandStrings(nil, "GET", "cr")))
	r.expect(bulk("4"))
}

func TestBigValue(t *testing.T) {
	rs := redistest.StartServer(t, redistest.ServerOptions{})
	srv := startProxy(t, testConfig(), newRoutes(rs.Addr))
	ctx := context.Background()
	c := proxyClient(t, srv.Addr().String(), &redis.Options{ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second})
	val := make([]byte, 64<<20)
	rand.Read(val)
	if err := c.Set(ctx, "big", val, 0).Err(); err != nil {
		t.Fatalf("SET 64MiB: %v", err)
	}
	got, err := c.Get(ctx, "big").Bytes()
	if err != nil {
		t.Fatalf("GET 64MiB: %v", err)
	}
	if !bytes.Equal(got, val) {
		t.Fatalf("64 MiB value differs (len %d)", len(got))
	}
	// still usable, pipelined with something big in the middle
	pipe := c.Pipeline()
	a := pipe.Get(ctx, "big")
	b := pipe.Ping(ctx)
	if _, err := pipe.Exec(ctx); err != nil || len(a.Val()) != len(val) || b.Val() != "PONG" {
		t.Fatalf("pipeline after big value: %v", err)
	}
}

func TestQuitAndRefused(t *testing.T) {
	rs := redistest.StartServer(t, redistest.ServerOptions{})
	srv := startProxy(t, testConfig(), newRoutes(rs.Addr))
	r := dialRaw(t, srv.Addr().String())
	for _, name := range []string{"SHUTDOWN", "replicaof", "SlaveOf", "DEBUG", "SYNC", "PSYNC", "FAILOVER", "CLUSTER"} {
		want := defaultIndex.resolve([][]byte{[]byte(name), []byte("x")}).refuse
		if !strings.HasPrefix(want, fmt.Sprintf("-ERR command '%s' is not allowed through redhaven", strings.ToLower(name))) {
			t.Fatalf("%s: refusal %q", name, want)
		}
		r.do(want, name, "x")
	}
	if err := rs.Client().Ping(context.Background()).Err(); err != nil {
		t.Fatalf("redis died: %v", err)
	}
	// QUIT after a pipelined command: the reply comes first, then +OK, then EOF
	r.write(string(appendCommandStrings(nil, "SET", "q", "1")) + string(appendCommandStrings(nil, "QUIT")) + string(appendCommandStrings(nil, "SET", "q", "2")))
	r.expect("+OK\r\n")
	r.expect("+OK\r\n")
	r.expectClosed()
	if v, _ := rs.Client().Get(context.Background(), "q").Result(); v != "1" {
		t.Fatalf("command after QUIT ran: q=%q", v)
	}
}

func TestProxyPassword(t *testing.T) {
	rs := redistest.StartServer(t, redistest.ServerOptions{Password: "backendpw"})
	cfg := testConfig()
	cfg.Password = "clientpw"
	cfg.BackendPassword = "backendpw"
	srv := startProxy(t, cfg, newRoutes(rs.Addr))
	ctx := context.Background()

	r := dialRaw(t, srv.Addr().String())
	r.do(ReplyNoAuth, "GET", "x")
	r.do(ReplyNoAuth, "HELLO", "3")
	r.do(ReplyWrongPass, "AUTH", "wrong")
	r.do(ReplyWrongPass, "AUTH", "bob", "clientpw")
	r.do("+OK\r\n", "AUTH", "clientpw")
	r.do("+OK\r\n", "SET", "authed", "1")
	// unauthenticated clients cannot send big requests (as Redis)
	r2 := dialRaw(t, srv.Addr().String())
	r2.write("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$100000\r\n")
	if got := r2.reply(); !strings.HasPrefix(got, "-ERR Protocol error: unauthenticated bulk length") {
		t.Fatalf("unauthenticated big bulk: %q", got)
	}
	r2.expectClosed()

	for _, proto := range []int{2, 3} {
		c := proxyClient(t, srv.Addr().String(), &redis.Options{Password: "clientpw", Protocol: proto})
		if v, err := c.Get(ctx, "authed").Result(); err != nil || v != "1" {
			t.Fatalf("go-redis RESP%d with password: %q %v", proto, v, err)
		}
		bad := proxyClient(t, srv.Addr().String(), &redis.Options{Password: "nope", Protocol: proto})
		if err := bad.Ping(ctx).Err(); err == nil || !strings.Contains(err.Error(), "WRONGPASS") {
			t.Fatalf("wrong password RESP%d: %v", proto, err)
		}
	}
}

func TestAuthPassThrough(t *testing.T) {
	rs := redistest.StartServer(t, redistest.ServerOptions{Password: "pw"})
	srv := startProxy(t, testConfig(), newRoutes(rs.Addr))
	r := dialRaw(t, srv.Addr().String())
	r.send("GET", "x")
	if got := r.reply(); !strings.HasPrefix(got, "-NOAUTH") {
		t.Fatalf("GET before AUTH: %q", got)
	}
	r.send("AUTH", "bad")
	if got := r.reply(); !strings.HasPrefix(got, "-WRONGPASS") {
		t.Fatalf("bad AUTH: %q", got)
	}
	r.do("+OK\r\n", "AUTH", "pw")
	r.do("$-1\r\n", "GET", "x")
}

func TestBadInput(t *testing.T) {
	rs := redistest.StartServer(t, redistest.ServerOptions{})
	cfg := testConfig()
	cfg.MaxRequestBytes = 64 << 10
	srv := startProxy(t, cfg, newRoutes(rs.Addr))
	cases := []struct{ name, in, want string }{
		{"bad-multibulk", "*x\r\n", "-ERR Protocol error: invalid multibulk length\r\n"},
		{"not-bulk", "*1\r\n:1\r\n", "-ERR Protocol error: expected '$', got ':'\r\n"},
		{"bad-bulk-len", "*1\r\n$-5\r\n", "-ERR Protocol error: invalid bulk length\r\n"},
		{"bulk-no-crlf", "*1\r\n$1\r\nab\r\n", "-ERR Protocol error: invalid bulk length\r\n"},
		{"unbalanced-quotes", "SET \"a b\r\n", "-ERR Protocol error: unbalanced quotes in request\r\n"},
		// the header alone is refused: the payload is never sent
		{"too-large", "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$100000\r\n", "-ERR Protocol error: invalid bulk length\r\n"},
		{"too-many-args", "*100000\r\n", "-ERR Protocol error: invalid multibulk length\r\n"},
		{"too-large-in-all", "*3\r\n$3\r\nSET\r\n$40000\r\n" + strings.Repeat("k", 40000) + "\r\n$40000\r\n", "-ERR request too large (max 65536 bytes)\r\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := dialRaw(t, srv.Addr().String())
			r.do("+PONG\r\n", "PING")
			r.write(tc.in)
			r.expect(tc.want)
			r.expectClosed()
		})
	}
	t.Run("inline", func(t *testing.T) {
		r := dialRaw(t, srv.Addr().String())
		r.write("\r\nSET inl \"a b\"\r\nGET inl\r\n")
		r.expect("+OK\r\n")
		r.expect(bulk("a b"))
	})
	if err := rs.Client().Ping(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
}

func TestMaxClients(t *testing.T) {
	rs := redistest.StartServer(t, redistest.ServerOptions{})
	cfg := testConfig()
	cfg.MaxClients = 2
	srv := startProxy(t, cfg, newRoutes(rs.Addr))
	a := dialRaw(t, srv.Addr().String())
	b := dialRaw(t, srv.Addr().String())
	a.do("+PONG\r\n", "PING")
	b.do("+PONG\r\n", "PING")
	c := dialRaw(t, srv.Addr().String())
	c.expect(ReplyMaxClients)
	c.expectClosed()
	st := srv.Stats().Listeners[0]
	if st.Refused != 1 || st.CurrentSessions != 2 || st.Limit != 2 {
		t.Fatalf("stats: %+v", st)
	}
	a.c.Close()
	testutil.Eventually(t, 5*time.Second, "session count drops", func() bool {
		return srv.Stats().Listeners[0].CurrentSessions == 1
	})
	d := dialRaw(t, srv.Addr().String())
	d.do("+PONG\r\n", "PING")
}

// TestBigPipelineNoDeadlock: a client that writes a long pipeline before
// reading any reply must not deadlock with the proxy, also when the proxy
// answers many of the commands itself.
func TestBigPipelineNoDeadlock(t *testing.T) {
	rs := redistest.StartServer(t, redistest.ServerOptions{})
	srv := startProxy(t, testConfig(), newRoutes(rs.Addr))
	r := dialRaw(t, srv.Addr().String())
	const n = 400000
	var batch []byte
	for i := 0; i < n; i++ {
		if i%2 == 0 || i < n/2 {
			batch = appendCommandStrings(batch, "DEBUG", "refused-with-a-long-enough-argument-to-fill-buffers")
		} else {
			batch = appendCommandStrings(batch, "SET", "pipelined", "some-value-some-value-some-value-some-value")
		}
	}
	// Generous: under -race on a loaded 2-core machine the pipeline takes
	// 40-60 s (49 s seen before the bounds work); a deadlock never ends.
	_ = r.c.SetWriteDeadline(time.Now().Add(180 * time.Second))
	if _, err := r.c.Write(batch); err != nil {
		t.Fatalf("writing the pipeline without reading: %v (proxy deadlocked?)", err)
	}
	refused := lookupCommand([]byte("debug")).refuse
	var want []byte
	for i := 0; i < n; i++ {
		if i%2 == 1 && i >= n/2 {
			want = append(want, "+OK\r\n"...)
		} else {
			want = append(want, refused...)
		}
	}
	got := make([]byte, len(want))
	_ = r.c.SetReadDeadline(time.Now().Add(180 * time.Second))
	if _, err := io.ReadFull(r.rd, got); err != nil {
		t.Fatalf("reading replies: %v", err)
	}
	if !bytes.Equal(got, want) {
		i := 0
		for i < len(got) && got[i] == want[i] {
			i++
		}
		t.Fatalf("replies differ at byte %d: %q", i, got[i:min(i+80, len(got))])
	}
}
