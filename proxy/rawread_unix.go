//go:build unix

package proxy

import (
	"crypto/tls"
	"io"
	"net"
	"syscall"
)

// readLoop reads from c into the buffers space returns and hands each
// chunk to handle, until handle returns false (nil error) or reading
// fails (io.EOF, a deadline, a closed connection).
//
// On TCP it reads the raw descriptor inside one poller registration: after
// a short read it goes straight to waiting for readiness instead of trying
// the read that would return EAGAIN, which net.Conn.Read does after every
// message (bench/RESULTS.md, part 3: that extra syscall is a large share
// of a Go proxy's cost). Deadlines still work (SetReadDeadline wakes it).
// handle must not block for long: the descriptor's read lock is held, so a
// Close of c waits for it. idle, if set, runs before each wait for
// readiness (a session lends its read buffer back there).
func readLoop(c net.Conn, space func() []byte, handle func(n int) bool, idle func()) error {
	if _, plain := c.(*net.TCPConn); !plain { // a pointer compare on the plain path
		if fc, ok := c.(fedTLS); ok {
			if tc, f := fc.fed(); f.raw != nil {
				return tlsReadLoop(tc, f, space, handle, idle)
			}
		}
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return plainReadLoop(c, space, handle)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return plainReadLoop(c, space, handle)
	}
	var rerr error
	stopped := false
	err = rc.Read(func(fd uintptr) bool {
		for {
			p := space()
			n, e := syscall.Read(int(fd), p)
			switch {
			case e == syscall.EINTR:
				continue
			case e == syscall.EAGAIN:
				if idle != nil {
					idle()
				}
				return false
			case e != nil:
				rerr = e
				return true
			case n == 0:
				rerr = io.EOF
				return true
			}
			if !handle(n) {
				stopped = true
				return true
			}
			if n < len(p) {
				if idle != nil {
					idle()
				}
				return false // drained: wait for readiness, no EAGAIN read
			}
		}
	})
	if err != nil {
		return err
	}
	if stopped {
		return nil
	}
	return rerr
}

// tlsReadLoop is readLoop for a TLS connection read through a tlsFeed:
// the socket is read as in readLoop, and after each read tc decrypts what
// it can (tc.Read until the feed is used up) and handle gets the
// plaintext. Plaintext or ciphertext left when handle stopped the loop is
// handed out first the next time.
func tlsReadLoop(tc *tls.Conn, f *tlsFeed, space func() []byte, handle func(n int) bool, idle func()) error {
	f.feeding = true
	defer func() { f.feeding = false }()
	// decrypt hands handle what tc can decrypt from what was read;
	// stop: handle returned false or tc failed (err).
	decrypt := func() (stop bool, err error) {
		for {
			n, err := tc.Read(space())
			if n > 0 && !handle(n) {
				return true, nil
			}
			if err == errWouldBlock {
				return false, nil
			}
			if err != nil {
				return true, err
			}
		}
	}
	if stop, err := decrypt(); stop {
		return err
	}
	var rerr error
	stopped := false
	err := f.raw.Read(func(fd uintptr) bool {
		for {
			if f.in == nil {
				f.in = (*feedBufs.Get().(*[]byte))[:0]
			}
			p := f.in[:cap(f.in)]
			n, e := syscall.Read(int(fd), p)
			switch {
			case e == syscall.EINTR:
				continue
			case e == syscall.EAGAIN:
				f.release()
				if idle != nil {
					idle()
				}
				return false
			case e != nil:
				rerr = e
				return true
			case n == 0:
				rerr = io.EOF
				return true
			}
			f.in, f.off = p[:n], 0
			if stop, err := decrypt(); stop {
				rerr, stopped = err, err == nil
				return true
			}
			if n < len(p) {
				if idle != nil {
					idle()
				}
				return false // drained: wait for readiness, no EAGAIN read
			}
		}
	})
	if err != nil {
		return err
	}
	if stopped {
		return nil
	}
	return rerr
}

// tryWrite writes what the socket accepts without waiting (n may be short
// with a nil error).
func tryWrite(c net.Conn, p []byte) (int, error) {
	if _, plain := c.(*net.TCPConn); !plain { // a pointer compare on the plain path
		if nb, ok := c.(nonBlockingWriter); ok {
			return nb.tryWrite(p) // TLS (tls.go)
		}
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return c.Write(p)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return c.Write(p)
	}
	var n int
	var werr error
	err = rc.Write(func(fd uintptr) bool {
		for n < len(p) {
			k, e := syscall.Write(int(fd), p[n:])
			if e == syscall.EINTR {
				continue
			}
			if e == syscall.EAGAIN {
				return true
			}
			if e != nil {
				werr = e
				return true
			}
			n += k
		}
		return true
	})
	if err != nil {
		return n, err
	}
	return n, werr
}
