package proxy

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// unreadBytes is how many bytes wait unread in c's socket (SIOCINQ; the
// TCP connection under a TLS one), 0 if it cannot tell.
func unreadBytes(c net.Conn) int {
	if tc, ok := c.(fedTLS); ok {
		t, _ := tc.fed()
		c = t.NetConn()
		if f, ok := c.(*tlsFeed); ok {
			c = f.Conn
		}
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return 0
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0
	}
	n := 0
	_ = rc.Control(func(fd uintptr) {
		if v, err := unix.IoctlGetInt(int(fd), unix.SIOCINQ); err == nil {
			n = v
		}
	})
	return n
}
