package proxy

import (
	"crypto/tls"
	"net"
	"sync"
	"syscall"
)

// tlsFeed is the TCP connection under a tls.Conn whose socket reads the
// proxy does itself (tlsReadLoop, rawread_unix.go), as readLoop does for
// plain TCP: inside one poller registration, waiting for readiness after a
// short read instead of issuing the read that returns EAGAIN. tls.Conn
// reads a record at a time and calls Read on the connection under it for
// each, so on its own it costs that extra read (and a poller reset) per
// record: measured ~1/3 of the proxy's read syscalls per request at P1.
//
// While feeding, Read hands tls.Conn the ciphertext the loop read and then
// answers errWouldBlock, a temporary net.Error, which tls.Conn returns
// without failing the connection (as it does for a deadline). Outside the
// loop (handshakes, pingCheck) Read reads the socket as usual, after what
// is still buffered. Only the goroutine reading the tls.Conn touches it.
type tlsFeed struct {
	net.Conn
	raw     syscall.RawConn // nil: not a socket, tlsReadLoop is not used
	in      []byte          // ciphertext read and not yet taken by tls.Conn
	off     int
	feeding bool
}

func newTLSFeed(c net.Conn) *tlsFeed {
	f := &tlsFeed{Conn: c}
	if tc, ok := c.(*net.TCPConn); ok {
		if rc, err := tc.SyscallConn(); err == nil {
			f.raw = rc
		}
	}
	return f
}

// feedBufSize holds a full TLS record (16 KiB of plaintext plus overhead).
const feedBufSize = 16<<10 + 512

var feedBufs = sync.Pool{New: func() any { b := make([]byte, feedBufSize); return &b }}

func (f *tlsFeed) Read(p []byte) (int, error) {
	if f.off < len(f.in) {
		n := copy(p, f.in[f.off:])
		f.off += n
		if f.off == len(f.in) {
			f.release()
		}
		return n, nil
	}
	if f.feeding {
		return 0, errWouldBlock
	}
	return f.Conn.Read(p)
}

// release returns the buffer once everything in it was taken.
func (f *tlsFeed) release() {
	if f.in != nil {
		b := f.in[:cap(f.in)]
		feedBufs.Put(&b)
		f.in, f.off = nil, 0
	}
}

// errWouldBlock: the ciphertext read so far is used up (tlsFeed).
var errWouldBlock net.Error = wouldBlock{}

type wouldBlock struct{}

func (wouldBlock) Error() string   { return "tls feed: no more input read" }
func (wouldBlock) Timeout() bool   { return false }
func (wouldBlock) Temporary() bool { return true } // tls.Conn keeps the connection

// fedTLS is a connection whose TLS reads go through a tlsFeed.
type fedTLS interface {
	fed() (*tls.Conn, *tlsFeed)
}

// tlsBackend is a TLS connection to Redis (dialBackend) read through a
// tlsFeed.
type tlsBackend struct {
	*tls.Conn
	feed *tlsFeed
}

func (c *tlsBackend) fed() (*tls.Conn, *tlsFeed) { return c.Conn, c.feed }
