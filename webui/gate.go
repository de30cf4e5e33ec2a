package webui

import (
	"net"
	"net/netip"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// A flood of wrong passwords from addresses that are already limited
// should cost the agent as little as possible: it shares a core with the
// proxy. Every refused request closes its connection (refuseAuth), so a
// client that goes on must connect again, and gateListener answers a new
// connection from a limited address itself with a fixed 429 and closes
// it, before net/http starts a goroutine, allocates buffers and parses a
// request. Measured with e2e/bench/auth-flood.sh (1,000 wrong passwords a
// second from 100 addresses over 800 connections): parsing those requests
// was what slowed the proxy, not bcrypt.

// cannedLimited is the whole answer of a refused connection.
var cannedLimited = func() []byte {
	const msg = "too many wrong passwords from this address: try again later\n"
	return []byte("HTTP/1.1 429 Too Many Requests\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n" +
		"Retry-After: " + strconv.Itoa(int(failEvery.Seconds())) + "\r\n" +
		"Connection: close\r\n" +
		"Content-Length: " + strconv.Itoa(len(msg)) + "\r\n" +
		"\r\n" + msg)
}()

// Bounds of the refused connections that wait for their 429: each holds
// a file descriptor and a timer (no goroutine). A client needs as many
// connections as it wants attempts per gateDelay.
const (
	gateDelay   = 5 * time.Second
	maxGateHeld = 1024
)

// gateListener refuses the connections of limited addresses at accept.
type gateListener struct {
	net.Listener
	refuses func(netip.Addr) bool
	limited prometheus.Counter // redhaven_http_auth_refused_total{reason="limited"}
	plain   bool               // HTTP without TLS: the 429 can be written as is
	delay   time.Duration      // a refused connection waits this long for its 429...
	held    atomic.Int32       // ...while fewer than maxGateHeld wait
}

// Accept returns the next connection that is not refused. Its loop ends
// with the listener's first error (Close ends it).
func (l *gateListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ta, ok := c.RemoteAddr().(*net.TCPAddr)
		if !ok || !l.refuses(ta.AddrPort().Addr()) {
			return c, nil
		}
		l.limited.Inc()
		l.refuse(c)
	}
}

// refuse answers c with the canned 429 and closes it, after l.delay while
// fewer than maxGateHeld wait (a flood is slowed to its connections per
// l.delay; beyond, it gets its answers at once and pays a connection for
// each). No goroutine waits: a timer does.
func (l *gateListener) refuse(c net.Conn) {
	if l.delay > 0 && l.held.Add(1) <= maxGateHeld {
		time.AfterFunc(l.delay, func() {
			l.answer(c)
			l.held.Add(-1)
		})
		return
	}
	if l.delay > 0 {
		l.held.Add(-1)
	}
	l.answer(c)
}

func (l *gateListener) answer(c net.Conn) {
	if l.plain {
		// Read what the client sent so far (without waiting), so that the
		// close is a FIN after the 429 rather than a reset that could
		// discard it; a fresh socket takes the 429 without blocking.
		drain(c)
		_ = c.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = c.Write(cannedLimited)
	}
	_ = c.Close()
}

// drain reads what c has received, without blocking.
func drain(c net.Conn) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return
	}
	var buf [4096]byte
	_ = rc.Read(func(fd uintptr) bool {
		for range 4 { // a request's headers fit in a few reads; more is not worth it
			if n, err := syscall.Read(int(fd), buf[:]); n <= 0 || err != nil {
				break
			}
		}
		return true // done, whether or not anything was there
	})
}
