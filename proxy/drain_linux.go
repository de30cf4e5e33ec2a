package proxy

import (
	"golang.org/x/sys/unix"
	"net"
)

// prepareClient sets IP_TRANSPARENT on an accepted client socket when
// SetTransparent asked for it (drain.go): a reply written after the VIP
// left the interface keeps its source address.
func (srv *Server) prepareClient(c net.Conn) {
	if !srv.drain.transparent.Load() {
		return
	}
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return
	}
	v6 := false
	if a, ok := tc.LocalAddr().(*net.TCPAddr); ok && a.IP.To4() == nil {
		v6 = true
	}
	var serr error
	_ = rc.Control(func(fd uintptr) {
		if v6 {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_IPV6, unix.IPV6_TRANSPARENT, 1)
		} else {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_TRANSPARENT, 1)
		}
	})
	if serr != nil {
		srv.drain.transparent.Store(false)
		srv.log.Warn("IP_TRANSPARENT refused (CAP_NET_ADMIN missing?): on a clean stop, replies written after the VIP left this host are lost", "err", serr)
	}
}

// corkClient holds the next write in the kernel (TCP_CORK) so that the
// shutdown right after it (closeWrite) rides in the same segment as the
// last reply: the client has the FIN when it has the reply.
func corkClient(c net.Conn) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return
	}
	if rc, err := tc.SyscallConn(); err == nil {
		_ = rc.Control(func(fd uintptr) { _ = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_CORK, 1) })
	}
}

// inputPending says whether the client sent bytes that wait in the
// socket unread (a command that crossed the drain's kick): the session
// reads and answers them before it closes.
func inputPending(c net.Conn) bool {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return false
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return false
	}
	var b [1]byte
	n := 0
	_ = rc.Control(func(fd uintptr) {
		n, _, _ = unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
	})
	return n > 0
}
