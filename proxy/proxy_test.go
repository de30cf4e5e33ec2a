package proxy

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/redhaven/redhaven/e2e/redistest"
	"github.com/redis/go-redis/v9"
)

func TestProxyBasics(t *testing.T) {
	rs := redistest.StartServer(t, redistest.ServerOptions{})
	srv := startProxy(t, testConfig(), newRoutes(rs.Addr))
	ctx := context.Background()

	for _, proto := range []int{2, 3} {
		t.Run(fmt.Sprintf("resp%d", proto), func(t *testing.T) {
			c := proxyClient(t, srv.Addr().String(), &redis.Options{Protocol: proto})
			key := fmt.Sprintf("k%d", proto)
			if err := c.Set(ctx, key, "v", 0).Err(); err != nil {
				t.Fatalf("SET: %v", err)
			}
			if v, err := c.Get(ctx, key).Result(); err != nil || v != "v" {
				t.Fatalf("GET = %q, %v", v, err)
			}
			// pipeline of 1000
			pipe := c.Pipeline()
			for i := 0; i < 1000; i++ {
				pipe.Set(ctx, fmt.Sprintf("p%d:%d", proto, i), i, 0)
			}
			gets := make([]*redis.StringCmd, 1000)
			for i := range gets {
				gets[i] = pipe.Get(ctx, fmt.Sprintf("p%d:%d", proto, i))
			}
			if _, err := pipe.Exec(ctx); err != nil {
				t.Fatalf("pipeline: %v", err)
			}
			for i, g := range gets {
				if g.Val() != fmt.Sprint(i) {
					t.Fatalf("pipelined GET %d = %q", i, g.Val())
				}
			}
			// HGETALL: a map in RESP3
			c.HSet(ctx, "h"+key, "a", "1", "b", "2")
			if m, err := c.HGetAll(ctx, "h"+key).Result(); err != nil || m["a"] != "1" || m["b"] != "2" {
				t.Fatalf("HGETALL = %v, %v", m, err)
			}
		})
	}

	t.Run("select", func(t *testing.T) {
		c := proxyClient(t, srv.Addr().String(), &redis.Options{DB: 5})
		c.Set(ctx, "indb5", "x", 0)
		if v := rs.Client().Do(ctx, "SELECT", "5").Err(); v != nil {
			t.Fatal(v)
		}
		direct := redis.NewClient(&redis.Options{Addr: rs.Addr, DB: 5})
		defer direct.Close()
		if v, _ := direct.Get(ctx, "indb5").Result(); v != "x" {
			t.Fatalf("key not in db 5: %q", v)
		}
	})

	t.Run("hello3-raw", func(t *testing.T) {
		r := dialRaw(t, srv.Addr().String())
		r.send("HELLO", "3")
		if got := r.reply(); !strings.HasPrefix(got, "%") {
			t.Fatalf("HELLO 3 reply %q is not a map", got)
		}
		r.do(":1\r\n", "HSET", "h3", "f", "v")
		r.do("%1\r\n"+bulk("f")+bulk("v"), "HGETALL", "h3")
	})
}
