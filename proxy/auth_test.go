package proxy

import (
	"strings"
	"testing"
	"time"

	"github.com/redhaven/redhaven/proxy/redistest"
)

// TestRuntimePasswordNoInheritedAuth: after CONFIG SET requirepass at
// runtime, a new client that never sent AUTH gets NOAUTH through the
// proxy, as on a direct connection, although a shared backend
// connection opened before the password (and so authenticated) exists.
// The password is set through the proxy (takes effect at once) and on a
// direct connection (found by the proxy's periodic check).
func TestRuntimePasswordNoInheritedAuth(t *testing.T) {
	for _, via := range []string{"proxy", "direct"} {
		t.Run(via, func(t *testing.T) {
			rs := redistest.StartServer(t, redistest.ServerOptions{})
			srv := startProxy(t, testConfig(), newRoutes(rs.Addr))
			addr := srv.Addr().String()

			// clients that used the proxy before the password was set
			// (they hold the shared connection open)
			before := dialRaw(t, addr)
			before.do("+OK\r\n", "SET", "k", "v")
			before3 := dialRaw(t, addr)
			before3.send("HELLO", "3")
			if got := before3.reply(); !strings.HasPrefix(got, "%") {
				t.Fatalf("HELLO 3: %q", got)
			}
			before3.do(bulk("v"), "GET", "k")

			if via == "proxy" {
				setter := dialRaw(t, addr)
				setter.do("+OK\r\n", "CONFIG", "SET", "requirepass", "newpw")
				for _, proto := range []string{"2", "3"} {
					c := dialRaw(t, addr)
					if proto == "3" {
						c.send("HELLO", "3")
						if got := c.reply(); !strings.HasPrefix(got, "-NOAUTH") {
							t.Fatalf("new client HELLO 3 after CONFIG SET requirepass through the proxy: %q, want -NOAUTH", got)
						}
					}
					c.send("GET", "k")
					if got := c.reply(); !strings.HasPrefix(got, "-NOAUTH") {
						t.Fatalf("new client (RESP%s) GET after CONFIG SET requirepass through the proxy: %q, want -NOAUTH", proto, got)
					}
					c.do("+OK\r\n", "AUTH", "newpw")
					c.do(bulk("v"), "GET", "k")
				}
			} else {
				d := dialRaw(t, rs.Addr)
				d.do("+OK\r\n", "CONFIG", "SET", "requirepass", "newpw")
				var last string
				redistest.Eventually(t, 10*time.Second, "a new client gets NOAUTH after a password set on a direct connection", func() bool {
					c := dialRaw(t, addr)
					c.send("GET", "k")
					last = c.reply()
					_ = c.c.Close()
					return strings.HasPrefix(last, "-NOAUTH")
				})
				c := dialRaw(t, addr)
				c.do("+OK\r\n", "AUTH", "newpw")
				c.do(bulk("v"), "GET", "k")
			}
		})
	}
}
