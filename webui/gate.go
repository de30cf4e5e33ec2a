package webui

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"runtime"
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
// was what slowed the proxy, not bcrypt. A refused connection is also never
// made a net.Conn: net's Accept registers each connection with the poller
// and sets five socket options, 13 system calls from accept to close where
// a bare descriptor needs 4 or 5 (accept4, read, write, close).
//
// Bursts matter as much as the total. With one P, Go's scheduler polls the
// network only when it has no goroutine ready to run (or every 10 ms from
// sysmon): hundreds of connections handed to net/http at once (100
// addresses with a full bucket each, 8 connections apiece) kept the P busy
// for a few hundred milliseconds in a runtime trace of the bench, and the
// proxy's goroutines, ready on their sockets, were not even seen; 800
// refusals held for the same gateDelay all answered at the same instant
// again. So the connections of addresses no user logged in from go to
// net/http at most gateAdmitRate a second (bursts of gateAdmitBurst): the
// accept loop sleeps in between, which leaves the P idle, so the runtime
// polls the network. And a refused connection waits gateDelay plus up to a
// quarter more at random, which spreads a synchronized flood out.

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
	gateDelay      = 5 * time.Second
	maxGateHeld    = 1024
	gateAdmitRate  = 400 // connections a second to net/http from addresses no user logged in from...
	gateAdmitBurst = 20  // ...in bursts of at most this many
)

// gateListener refuses the connections of limited addresses at accept.
// It accepts on the listener's descriptor itself, so that a refused
// connection stays a bare descriptor; only an accepted one becomes a
// net.Conn (as net's would: TCP_NODELAY, keep-alive).
type gateListener struct {
	net.Listener
	file    *os.File        // a copy of the listener's descriptor, in the poller...
	raw     syscall.RawConn // ...to wait on (net's listener does not allow it)
	verdict func(netip.Addr) connVerdict
	limited prometheus.Counter  // redhaven_http_auth_refused_total{reason="limited"}
	plain   bool                // HTTP without TLS: the 429 can be written as is
	delay   time.Duration       // a refused connection waits this long for its 429...
	held    atomic.Int32        // ...while fewer than maxGateHeld wait
	rate    int                 // gateAdmitRate (tests change it)
	admit   bucket              // of rate: used by Accept only
	now     func() time.Time    // time.Now; tests
	sleep   func(time.Duration) // time.Sleep; tests
}

func newGateListener(ln net.Listener, verdict func(netip.Addr) connVerdict, limited prometheus.Counter, plain bool, delay time.Duration, rate int) (*gateListener, error) {
	fl, ok := ln.(interface{ File() (*os.File, error) })
	if !ok {
		return nil, errors.New("gate: listener without a descriptor")
	}
	f, err := fl.File()
	if err != nil {
		return nil, fmt.Errorf("gate: %w", err)
	}
	raw, err := f.SyscallConn()
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("gate: %w", err)
	}
	return &gateListener{Listener: ln, file: f, raw: raw, verdict: verdict, limited: limited, plain: plain, delay: delay, rate: rate,
		admit: bucket{tokens: gateAdmitBurst, at: time.Now()}, now: time.Now, sleep: time.Sleep}, nil
}

// Close closes the copy first: it ends a waiting Accept, and the socket
// stops listening only when both are closed.
func (l *gateListener) Close() error {
	return errors.Join(l.file.Close(), l.Listener.Close())
}

// Accept returns the next connection that is not refused. Its loop ends
// with the listener's first error (Close ends it).
func (l *gateListener) Accept() (net.Conn, error) {
	for {
		fd, sa, err := l.accept()
		if err != nil {
			return nil, err
		}
		v := connAdmit
		if addr, ok := sockaddrAddr(sa); ok {
			v = l.verdict(addr)
		}
		switch v {
		case connTrusted:
			return l.conn(fd)
		case connAdmit:
			l.pace()
			return l.conn(fd)
		}
		l.limited.Inc()
		l.refuse(fd)
		// A backlog of refusals is worked off between the proxy's
		// goroutines, not in one run that they wait for.
		runtime.Gosched()
	}
}

// pace waits until a connection may go to net/http: at most l.rate
// (gateAdmitRate) a second, gateAdmitBurst at once. The wait is a sleep
// (at most 1/l.rate), so the P is left idle for the runtime to poll the
// network.
func (l *gateListener) pace() {
	if l.rate <= 0 {
		return // not paced
	}
	every := time.Second / time.Duration(l.rate)
	l.admit.refill(l.now(), gateAdmitBurst, every)
	if l.admit.tokens < 1 {
		l.sleep(time.Duration((1 - l.admit.tokens) * float64(every)))
		l.admit.refill(l.now(), gateAdmitBurst, every)
	}
	l.admit.tokens-- // below 0 only if the sleep was short: the next wait is longer
}

// accept takes one connection from the listener's queue, waiting in the
// poller while it is empty.
func (l *gateListener) accept() (int, syscall.Sockaddr, error) {
	fd, sa, serr := -1, syscall.Sockaddr(nil), error(nil)
	err := l.raw.Read(func(lfd uintptr) bool {
		for range 100 {
			fd, sa, serr = syscall.Accept4(int(lfd), syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC)
			switch serr {
			case syscall.EINTR, syscall.ECONNABORTED: // gone before accept, as net retries
				continue
			case syscall.EAGAIN:
				return false // wait until the listener is readable
			}
			break
		}
		return true
	})
	if err != nil {
		return -1, nil, err // the listener closed
	}
	if serr != nil {
		// EMFILE and the like: net/http retries errors that are Temporary.
		return -1, nil, &net.OpError{Op: "accept", Net: "tcp", Addr: l.Addr(), Err: os.NewSyscallError("accept4", serr)}
	}
	return fd, sa, nil
}

// conn makes an accepted descriptor a net.Conn (FileConn takes a copy).
func (l *gateListener) conn(fd int) (net.Conn, error) {
	f := os.NewFile(uintptr(fd), "")
	c, err := net.FileConn(f)
	_ = f.Close()
	if err != nil {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: l.Addr(), Err: err}
	}
	return c, nil
}

func sockaddrAddr(sa syscall.Sockaddr) (netip.Addr, bool) {
	switch a := sa.(type) {
	case *syscall.SockaddrInet4:
		return netip.AddrFrom4(a.Addr), true
	case *syscall.SockaddrInet6:
		return netip.AddrFrom16(a.Addr), true
	}
	return netip.Addr{}, false
}

// refuse answers fd with the canned 429 and closes it, after l.delay while
// fewer than maxGateHeld wait (a flood is slowed to its connections per
// l.delay; beyond, it gets its answers at once and pays a connection for
// each). No goroutine waits: a timer does.
func (l *gateListener) refuse(fd int) {
	if l.delay > 0 && l.held.Add(1) <= maxGateHeld {
		time.AfterFunc(jitter(l.delay), func() {
			l.answer(fd)
			l.held.Add(-1)
		})
		return
	}
	if l.delay > 0 {
		l.held.Add(-1)
	}
	l.answer(fd)
}

// jitter is d plus up to a quarter of d, at random: answers that would be
// due at the same instant spread out.
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return d
	}
	return d + rand.N(d/4+1)
}

func (l *gateListener) answer(fd int) {
	if l.plain {
		// Read what the client sent so far (without waiting), so that the
		// close is a FIN after the 429 rather than a reset that could
		// discard it; a fresh socket takes the 429 without blocking.
		var buf [4096]byte
		for range 4 { // a request's headers fit in a few reads; more is not worth it
			if n, err := syscall.Read(fd, buf[:]); n < len(buf) || err != nil {
				break
			}
		}
		_, _ = syscall.Write(fd, cannedLimited)
	}
	_ = syscall.Close(fd)
}
