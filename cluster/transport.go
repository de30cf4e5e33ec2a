package cluster

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"
)

// errIsolated is returned by dials while the agent is isolated (Isolate).
var errIsolated = errors.New("cluster: node isolated")

// streamLayer is raft's TCP stream layer on a listener bound in New, with a
// switch that cuts all Raft traffic (Isolate) by refusing dials, dropping
// accepted connections and closing the open ones.
type streamLayer struct {
	ln        net.Listener
	advertise net.Addr
	isolated  *atomic.Bool

	mu    sync.Mutex
	conns map[*trackedConn]struct{}
}

var _ raft.StreamLayer = (*streamLayer)(nil)

func (s *streamLayer) Accept() (net.Conn, error) {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return nil, err
		}
		if s.isolated.Load() {
			_ = c.Close()
			continue
		}
		return s.track(c), nil
	}
}

func (s *streamLayer) Close() error { return s.ln.Close() }

func (s *streamLayer) Addr() net.Addr { return s.advertise }

func (s *streamLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	if s.isolated.Load() {
		return nil, errIsolated
	}
	d := net.Dialer{Timeout: timeout}
	c, err := d.Dial("tcp", string(addr))
	if err != nil {
		return nil, err
	}
	return s.track(c), nil
}

func (s *streamLayer) track(c net.Conn) net.Conn {
	tc := &trackedConn{Conn: c, s: s}
	s.mu.Lock()
	if s.conns == nil {
		s.conns = map[*trackedConn]struct{}{}
	}
	s.conns[tc] = struct{}{}
	s.mu.Unlock()
	return tc
}

// closeAll closes every open Raft connection (used when isolating).
func (s *streamLayer) closeAll() {
	s.mu.Lock()
	conns := make([]*trackedConn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
}

type trackedConn struct {
	net.Conn
	s    *streamLayer
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.s.mu.Lock()
		delete(c.s.conns, c)
		c.s.mu.Unlock()
	})
	return c.Conn.Close()
}

// gossipTransport wraps memberlist's NetTransport with the same isolation
// switch: while isolated, packets and streams are dropped both ways.
type gossipTransport struct {
	inner    *memberlist.NetTransport
	isolated *atomic.Bool

	packetCh chan *memberlist.Packet
	streamCh chan net.Conn
	done     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup
}

var _ memberlist.Transport = (*gossipTransport)(nil)

// newGossipTransport starts two forwarding goroutines, stopped by Shutdown
// (which memberlist calls from its own Shutdown).
func newGossipTransport(inner *memberlist.NetTransport, isolated *atomic.Bool) *gossipTransport {
	t := &gossipTransport{
		inner:    inner,
		isolated: isolated,
		packetCh: make(chan *memberlist.Packet),
		streamCh: make(chan net.Conn),
		done:     make(chan struct{}),
	}
	t.wg.Add(2)
	go func() {
		defer t.wg.Done()
		for {
			select {
			case p := <-inner.PacketCh():
				if t.isolated.Load() {
					continue
				}
				select {
				case t.packetCh <- p:
				case <-t.done:
					return
				}
			case <-t.done:
				return
			}
		}
	}()
	go func() {
		defer t.wg.Done()
		for {
			select {
			case c := <-inner.StreamCh():
				if t.isolated.Load() {
					_ = c.Close()
					continue
				}
				select {
				case t.streamCh <- c:
				case <-t.done:
					_ = c.Close()
					return
				}
			case <-t.done:
				return
			}
		}
	}()
	return t
}

func (t *gossipTransport) FinalAdvertiseAddr(ip string, port int) (net.IP, int, error) {
	return t.inner.FinalAdvertiseAddr(ip, port)
}

func (t *gossipTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	if t.isolated.Load() {
		return time.Now(), nil // dropped on the floor, like a cut cable
	}
	return t.inner.WriteTo(b, addr)
}

func (t *gossipTransport) PacketCh() <-chan *memberlist.Packet { return t.packetCh }

func (t *gossipTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	if t.isolated.Load() {
		return nil, errIsolated
	}
	return t.inner.DialTimeout(addr, timeout)
}

func (t *gossipTransport) StreamCh() <-chan net.Conn { return t.streamCh }

func (t *gossipTransport) Shutdown() error {
	// The inner listeners block on their channels, so keep forwarding
	// until they have stopped; memberlist still consumes at this point.
	err := t.inner.Shutdown()
	t.stopOnce.Do(func() { close(t.done) })
	t.wg.Wait()
	return err
}
