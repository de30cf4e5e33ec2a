package proxy

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"testing"
	"time"

	"github.com/redhaven/redhaven/e2e/redistest"
)

// BenchmarkProxyGetSet compares a direct connection to Redis with the
// proxy: SET+GET pairs, pipeline depth 1 and 16, 8 parallel connections
// per GOMAXPROCS (b.RunParallel). ns/op is per command; compare
// direct/* with proxy/* of the same depth.
func BenchmarkProxyGetSet(b *testing.B) {
	rs := redistest.StartServer(b, redistest.ServerOptions{})
	srv := startProxy(b, testConfig(), newRoutes(rs.Addr))
	for _, depth := range []int{1, 16} {
		for _, target := range []struct{ name, addr string }{{"direct", rs.Addr}, {"proxy", srv.Addr().String()}} {
			b.Run(fmt.Sprintf("%s/P%d", target.name, depth), func(b *testing.B) {
				var batch []byte
				for i := 0; i < depth/2+depth%2; i++ {
					batch = appendCommandStrings(batch, "SET", "bench:key", "value-0123456789")
					batch = appendCommandStrings(batch, "GET", "bench:key")
				}
				perBatch := 2 * (depth/2 + depth%2)
				b.SetParallelism(8)
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					c, err := net.Dial("tcp", target.addr)
					if err != nil {
						b.Error(err)
						return
					}
					defer c.Close()
					rd := bufio.NewReaderSize(c, 64<<10)
					buf := make([]byte, 64<<10)
					var f respFramer
					for pb.Next() {
						if _, err := c.Write(batch); err != nil {
							b.Error(err)
							return
						}
						got := 0
						for got < perBatch {
							n, err := rd.Read(buf)
							if err != nil {
								b.Error(err)
								return
							}
							p := buf[:n]
							for len(p) > 0 {
								k, done, err := f.feed(p)
								if err != nil {
									b.Error(err)
									return
								}
								p = p[k:]
								if done {
									got++
								}
							}
						}
					}
				})
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*perBatch), "ns/cmd")
			})
		}
	}
}

// TestServeForBench runs the proxy for an external benchmark
// (redis-benchmark, ../shared/bench/proxy-overhead.sh): skipped unless
// REDHAVEN_PROXY_SERVE=listen-addr and REDHAVEN_PROXY_BACKEND=redis-addr
// are set; serves for REDHAVEN_PROXY_SERVE_FOR (default 2m).
func TestServeForBench(t *testing.T) {
	listen, backend := os.Getenv("REDHAVEN_PROXY_SERVE"), os.Getenv("REDHAVEN_PROXY_BACKEND")
	if listen == "" || backend == "" {
		t.Skip("set REDHAVEN_PROXY_SERVE and REDHAVEN_PROXY_BACKEND to serve for a benchmark")
	}
	d, err := time.ParseDuration(os.Getenv("REDHAVEN_PROXY_SERVE_FOR"))
	if err != nil {
		d = 2 * time.Minute
	}
	cfg := DefaultConfig()
	cfg.Listen = listen
	if v := os.Getenv("PROXY_TEST_MULTIPLEX"); v != "" {
		cfg.Multiplex = v == "1"
	}
	srv, err := New(cfg, newRoutes(backend), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if err := srv.Run(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("stats: %+v", srv.Stats())
	t.Logf("shared connections: held commands back %d times, found stalled %d times", srv.muxHolds.Load(), srv.muxStalls.Load())
}

// BenchmarkLookupCommand: the fast path's table lookup (every command).
func BenchmarkLookupCommand(b *testing.B) {
	names := [][]byte{[]byte("GET"), []byte("set"), []byte("HSET"), []byte("subscribe"), []byte("EVALSHA"), []byte("unknowncmd")}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		lookupCommand(names[i%len(names)])
	}
}
