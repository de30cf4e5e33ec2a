package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redhaven/redhaven/e2e/redistest"
	"github.com/redis/go-redis/v9"
)

// testRoutes is a RouteSource the test sets by hand.
type testRoutes struct {
	mu sync.Mutex
	r  Route
	ch chan struct{}
}

func newRoutes(master string, replicas ...string) *testRoutes {
	return &testRoutes{r: Route{Master: master, Epoch: 1, Replicas: replicas}, ch: make(chan struct{}, 1)}
}

func (t *testRoutes) Route() Route {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.r
}

func (t *testRoutes) RouteChanges() <-chan struct{} { return t.ch }

func (t *testRoutes) Set(master string, replicas ...string) {
	t.mu.Lock()
	t.r = Route{Master: master, Epoch: t.r.Epoch + 1, Replicas: replicas}
	t.mu.Unlock()
	select {
	case t.ch <- struct{}{}:
	default:
	}
}

func testConfig() Config {
	cfg := DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.HoldTimeout = 3 * time.Second
	if v := os.Getenv("PROXY_TEST_MULTIPLEX"); v != "" {
		cfg.Multiplex = v == "1"
	}
	return cfg
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("PROXY_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// startProxy runs a proxy until the test ends.
func startProxy(t testing.TB, cfg Config, routes RouteSource) *Server {
	t.Helper()
	srv, stop := runProxy(t, cfg, routes)
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Error(err)
		}
	})
	return srv
}

// runProxy runs a proxy; stop ends it and says how Run returned (it may
// be called more than once).
func runProxy(t testing.TB, cfg Config, routes RouteSource) (srv *Server, stop func() error) {
	t.Helper()
	srv, err := New(cfg, routes, testLogger(t))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	return srv, sync.OnceValue(func() error {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				return fmt.Errorf("Run: %w", err)
			}
			return nil
		case <-time.After(10 * time.Second):
			return errors.New("Run did not return within 10s of cancel")
		}
	})
}

// proxyClient is a go-redis client through the proxy.
func proxyClient(t testing.TB, addr string, opt *redis.Options) *redis.Client {
	t.Helper()
	if opt == nil {
		opt = &redis.Options{}
	}
	opt.Addr = addr
	if opt.MaxRetries == 0 {
		opt.MaxRetries = -1
	}
	c := redis.NewClient(opt)
	t.Cleanup(func() { c.Close() })
	return c
}

// rawClient speaks RESP by hand, to see exactly what the proxy sends.
type rawClient struct {
	t  testing.TB
	c  net.Conn
	rd *bufio.Reader
}

func dialRaw(t testing.TB, addr string) *rawClient {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawClient{t: t, c: c, rd: bufio.NewReader(c)}
}

func (r *rawClient) send(args ...string) {
	r.t.Helper()
	if _, err := r.c.Write(appendCommandStrings(nil, args...)); err != nil {
		r.t.Fatalf("write %v: %v", args, err)
	}
}

func (r *rawClient) write(s string) {
	r.t.Helper()
	if _, err := r.c.Write([]byte(s)); err != nil {
		r.t.Fatalf("write: %v", err)
	}
}

// reply reads one complete reply (raw bytes) within timeout.
func (r *rawClient) replyWithin(timeout time.Duration) (string, error) {
	_ = r.c.SetReadDeadline(time.Now().Add(timeout))
	defer r.c.SetReadDeadline(time.Time{})
	var f respFramer
	var out []byte
	for {
		b, err := r.rd.ReadByte()
		if err != nil {
			return string(out), err
		}
		out = append(out, b)
		_, done, ferr := f.feed([]byte{b})
		if ferr != nil {
			return string(out), ferr
		}
		if done {
			return string(out), nil
		}
	}
}

func (r *rawClient) reply() string {
	r.t.Helper()
	s, err := r.replyWithin(10 * time.Second)
	if err != nil {
		r.t.Fatalf("read reply: %v (got %q)", err, s)
	}
	return s
}

func (r *rawClient) expect(want string) {
	r.t.Helper()
	if got := r.reply(); got != want {
		r.t.Fatalf("reply = %q, want %q", got, want)
	}
}

func (r *rawClient) do(want string, args ...string) {
	r.t.Helper()
	r.send(args...)
	r.expect(want)
}

// expectClosed checks that the proxy closed the connection.
func (r *rawClient) expectClosed() {
	r.t.Helper()
	s, err := r.replyWithin(5 * time.Second)
	if err == nil || !errors.Is(err, errEOFish(err)) {
		r.t.Fatalf("connection not closed: got %q, %v", s, err)
	}
}

func errEOFish(err error) error {
	if err != nil && (strings.Contains(err.Error(), "EOF") || strings.Contains(err.Error(), "reset")) {
		return err
	}
	return fmt.Errorf("not eof")
}

func bulk(s string) string { return fmt.Sprintf("$%d\r\n%s\r\n", len(s), s) }

func infoField(t testing.TB, c *redis.Client, section, field string) string {
	t.Helper()
	info, err := c.Info(context.Background(), section).Result()
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return v
		}
	}
	return ""
}

func role(c *redis.Client) string {
	v, err := c.Do(context.Background(), "ROLE").Slice()
	if err != nil || len(v) == 0 {
		return ""
	}
	return fmt.Sprint(v[0])
}

// promote makes b a master (REPLICAOF NO ONE) and optionally a a replica of b.
func promote(t testing.TB, b *redistest.Server, a *redistest.Server) {
	t.Helper()
	ctx := context.Background()
	if err := b.Client().Do(ctx, "REPLICAOF", "NO", "ONE").Err(); err != nil {
		t.Fatalf("replicaof no one: %v", err)
	}
	if a != nil {
		host, port, _ := net.SplitHostPort(b.Addr)
		if err := a.Client().Do(ctx, "REPLICAOF", host, port).Err(); err != nil {
			t.Fatalf("replicaof: %v", err)
		}
	}
}
