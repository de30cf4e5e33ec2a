package proxy

import (
	"fmt"
	"net"
	"sync/atomic"
	"time"
)

// backendConn is one connection from a session to a Redis server. The
// session writes commands to conn; the reader goroutine (backendLoop)
// frames the replies and hands each to the session. A later multiplexed
// pool replaces this type, not the session logic: what a session needs
// from it is "send these bytes" and "call me back with each reply, in
// order, and once when you are gone".
type backendConn struct {
	addr  string
	conn  net.Conn
	stats *backendStats
	cmds  atomic.Int64 // commands sent, folded into stats on retire
	done  chan struct{}

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

func (srv *Server) dial(addr string) (*backendConn, error) {
	st := srv.backendStatsFor(addr)
	d := net.Dialer{Timeout: srv.cfg.DialTimeout, KeepAlive: 15 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		st.errors.Add(1)
		return nil, fmt.Errorf("dial backend %s: %w", addr, err)
	}
	return &backendConn{addr: addr, conn: c, stats: st, done: make(chan struct{}), buf: make([]byte, readBufSize)}, nil
}

func (be *backendConn) space() []byte { return be.buf[be.end:] }
