package proxy

import (
	"bytes"
	"fmt"
	"net"
	"sync/atomic"
	"time"
)

// backendConn is a session's connection to a Redis server: its own socket
// (conn, read by backendLoop), or its place on a shared one (mux; the
// shared connection's reader calls deliverMux). Either way what the
// session needs from it is "send these bytes" and "call me back with each
// of my replies, in order, and once when you are gone".
type backendConn struct {
	addr  string
	conn  net.Conn // nil on a shared connection
	mux   *muxConn // the shared connection (proxy.multiplex), or nil
	owner *session // set for a shared connection
	stats *backendStats
	cmds  atomic.Int64 // commands sent, folded into stats on retire
	done  chan struct{}
	gone  atomic.Bool // a shared one was ended (session.lose)
	// due: replies a shared connection still owes this place (added
	// when written, taken when read: muxConn.send, onData)
	due atomic.Int64
	// stallOK: attached to a stalled shared connection because a fresh
	// one could not be opened (it is used all the same)
	stallOK bool
	// moveHeld: the shared connection was found stalled with commands of
	// this place held back (never written) and nothing of it written
	// still due: the session takes them back for a fresh connection
	// (session.unhold)
	moveHeld atomic.Bool
	// under the shared connection's mu: the commands it holds back for
	// this place (muxstall.go): bytes, replies due, and the session's log
	// offset of the first held byte
	heldLen, heldN int
	heldFrom       int64

	// under the session's mu
	gen        uint64
	dead       bool
	retiring   bool
	replay     []replayEntry // replies to the replayed state come first
	discarding bool          // after -READONLY: replies are dropped, commands resent later
	discardSeq uint64
	kickC      bool

	// owned by the reader goroutine
	buf                  []byte
	fs, scan, end        int // reply start, framed up to, data end
	framer               respFramer
	streaming, streamFwd bool // a reply larger than buf is being passed through
}

type replayEntry struct {
	n    int32
	kind cmdKind
}

// dial opens a dedicated backend connection.
func (srv *Server) dial(addr string) (*backendConn, error) {
	c, st, err := srv.dialTCP(addr)
	if err != nil {
		return nil, err
	}
	return &backendConn{addr: addr, conn: c, stats: st, done: make(chan struct{}), buf: make([]byte, readBufSize)}, nil
}

// dialTCP connects to a backend; a failure counts as an error of addr.
// After a connection to addr was lost, the next one must answer a PING
// before anything is sent on it: a Redis being killed still completes TCP
// handshakes until its listening socket closes, and commands written on
// such a connection would come back "outcome unknown" a second time.
func (srv *Server) dialTCP(addr string) (net.Conn, *backendStats, error) {
	st := srv.backendStatsFor(addr)
	c, err := srv.dialBackend(addr)
	if err != nil {
		st.errors.Add(1)
		return nil, st, fmt.Errorf("dial backend %s: %w", addr, err)
	}
	if st.lost.Load() {
		if err := pingCheck(c, srv.cfg.DialTimeout); err != nil {
			st.errors.Add(1)
			_ = c.Close()
			return nil, st, fmt.Errorf("backend %s does not answer PING since a connection to it was lost: %w", addr, err)
		}
		st.lost.Store(false)
	}
	return c, st, nil
}

var pingRaw = appendCommandStrings(nil, "PING")

// pingCheck sends PING and waits for a one-line reply (+PONG, or an error
// such as -NOAUTH: either way the server reads its connections).
func pingCheck(c net.Conn, timeout time.Duration) error {
	_ = c.SetDeadline(time.Now().Add(timeout))
	defer c.SetDeadline(time.Time{})
	if _, err := c.Write(pingRaw); err != nil {
		return err
	}
	var buf [256]byte
	n := 0
	for n < len(buf) {
		k, err := c.Read(buf[n:])
		n += k
		if i := bytes.Index(buf[:n], []byte("\r\n")); i >= 0 {
			if i+2 != n || (buf[0] != '+' && buf[0] != '-') {
				return fmt.Errorf("unexpected reply to PING %q", buf[:n])
			}
			return nil
		}
		if err != nil {
			return err
		}
	}
	return fmt.Errorf("reply to PING too long: %q", buf[:32])
}

func (be *backendConn) space() []byte { return be.buf[be.end:] }
