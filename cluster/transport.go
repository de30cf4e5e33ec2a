package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"
)

// errIsolated is returned by dials while the agent is isolated (Isolate).
var errIsolated = errors.New("cluster: node isolated")

// Bounds of the TLS stream layer: a peer that connects and stays silent is
// dropped after handshakeTimeout, and at most maxHandshakes handshakes run
// at once (more are refused and counted as "busy").
const (
	handshakeTimeout = 5 * time.Second
	maxHandshakes    = 64
)

// streamLayer is raft's TCP stream layer on a listener bound in New, with
// mutual TLS 1.3 when tls is set (cluster key or operator PKI), and a
// switch that cuts all Raft traffic (Isolate) by refusing dials, dropping
// accepted connections and closing the open ones.
type streamLayer struct {
	ln        net.Listener
	advertise net.Addr
	isolated  *atomic.Bool
	// tls is nil for plain text (single node without key, or
	// cluster.insecure).
	tls *raftTLS
	// nameOf returns the node name of the Raft server at a dialled
	// address ("" when unknown): its certificate must name it.
	nameOf func(addr string) string
	// reject counts and logs a refused connection.
	reject func(remote net.Addr, reason string, err error)
	// admin serves one admin-channel request (admin_channel.go); nil
	// until the agent sets it.
	admin    func(ctx context.Context, c net.Conn)
	adminSem chan struct{}

	acceptOnce sync.Once
	accepted   chan net.Conn
	done       chan struct{}
	closeOnce  sync.Once
	closeErr   error
	wg         sync.WaitGroup
	sem        chan struct{}

	mu     sync.Mutex
	closed bool
	conns  map[*trackedConn]struct{}
}

var _ raft.StreamLayer = (*streamLayer)(nil)

func newStreamLayer(ln net.Listener, advertise net.Addr, isolated *atomic.Bool) *streamLayer {
	return &streamLayer{
		ln: ln, advertise: advertise, isolated: isolated,
		nameOf:   func(string) string { return "" },
		reject:   func(net.Addr, string, error) {},
		accepted: make(chan net.Conn),
		done:     make(chan struct{}),
		sem:      make(chan struct{}, maxHandshakes),
		adminSem: make(chan struct{}, maxAdminRequests),
	}
}

func (s *streamLayer) Accept() (net.Conn, error) {
	if s.tls == nil {
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
	s.acceptOnce.Do(func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if !s.closed { // no wg.Add once Close may be waiting
			s.wg.Add(1)
			go s.acceptLoop()
		}
	})
	select {
	case c := <-s.accepted:
		return c, nil
	case <-s.done:
		return nil, net.ErrClosed
	}
}

// acceptLoop accepts TCP connections and runs each TLS handshake in its own
// goroutine (bounded in time and number), so a silent peer holds neither
// the accept loop nor a goroutine for long.
func (s *streamLayer) acceptLoop() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			select {
			case <-s.done:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond) // e.g. EMFILE; raft's own loop backs off too
			continue
		}
		if s.isolated.Load() {
			_ = c.Close()
			continue
		}
		select {
		case s.sem <- struct{}{}:
		default:
			s.reject(c.RemoteAddr(), RejectBusy, errors.New("too many raft handshakes in progress"))
			_ = c.Close()
			continue
		}
		tc := s.track(c)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			tlsConn := tls.Server(tc, s.tls.serverConfig())
			err := s.handshake(tlsConn, handshakeTimeout)
			<-s.sem // the slot bounds handshakes, not what follows
			if err != nil {
				return
			}
			if tlsConn.ConnectionState().NegotiatedProtocol == adminALPN {
				tc.admin.Store(true)
				s.serveAdmin(tlsConn)
				return
			}
			select {
			case s.accepted <- tlsConn:
			case <-s.done:
				_ = tlsConn.Close()
			}
		}()
	}
}

// handshake runs the TLS handshake with a deadline; on failure it closes
// the connection and reports the rejection.
func (s *streamLayer) handshake(c *tls.Conn, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	err := c.HandshakeContext(ctx)
	if err == nil {
		return nil
	}
	_ = c.Close()
	s.reject(c.NetConn().RemoteAddr(), rejectReason(err), err)
	return err
}

// rejectReason classifies a failed handshake.
func rejectReason(err error) string {
	var re *rejectError
	var rh tls.RecordHeaderError
	var ne net.Error
	switch {
	case errors.As(err, &re):
		return re.reason
	case errors.As(err, &rh):
		return RejectNotTLS
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return RejectTimeout
	case strings.Contains(err.Error(), "didn't provide a certificate"):
		// crypto/tls's own check (RequireAnyClientCert), before ours
		return RejectNoCertificate
	case strings.Contains(err.Error(), "certificate required"), strings.Contains(err.Error(), "bad certificate"):
		// the peer refused our certificate, or sent none
		return RejectUntrusted
	}
	return RejectHandshake
}

// Close stops accepting and closes every connection; admin requests in
// flight see their context cancelled.
func (s *streamLayer) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		close(s.done)
		s.closeErr = s.ln.Close()
		if s.tls != nil {
			s.closeAll() // pending handshakes end now, not at their deadline
		}
	})
	s.wg.Wait()
	return s.closeErr
}

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
	tc := s.track(c)
	if s.tls == nil {
		return tc, nil
	}
	return s.clientHandshake(tc, s.nameOf(string(addr)), timeout)
}

// clientHandshake runs the client side of the TLS handshake; name is the
// node name the server's certificate must carry ("" = any trusted one).
func (s *streamLayer) clientHandshake(c net.Conn, name string, timeout time.Duration) (net.Conn, error) {
	if timeout <= 0 || timeout > handshakeTimeout {
		timeout = handshakeTimeout
	}
	tlsConn := tls.Client(c, s.tls.clientConfig(name))
	if err := s.handshake(tlsConn, timeout); err != nil {
		return nil, fmt.Errorf("raft tls handshake with %s: %w", c.RemoteAddr(), err)
	}
	return tlsConn, nil
}

// probe dials addr and checks that it presents a certificate for node
// name (no Raft RPC is sent). Plain text: that something listens there.
func (s *streamLayer) probe(addr, name string, timeout time.Duration) error {
	if s.isolated.Load() {
		return errIsolated
	}
	d := net.Dialer{Timeout: timeout}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return err
	}
	if s.tls == nil {
		return c.Close()
	}
	tc, err := s.clientHandshake(s.track(c), name, timeout)
	if err != nil {
		return err
	}
	return tc.Close()
}

func (s *streamLayer) track(c net.Conn) *trackedConn {
	tc := &trackedConn{Conn: c, s: s}
	s.mu.Lock()
	if s.conns == nil {
		s.conns = map[*trackedConn]struct{}{}
	}
	s.conns[tc] = struct{}{}
	s.mu.Unlock()
	return tc
}

// closeAll closes every open Raft and admin connection (used when
// isolating).
func (s *streamLayer) closeAll() { s.closeConns(true) }

// closeRaft closes the open Raft connections only (a key removal: every
// peer proves itself again), not the admin exchanges in flight, one of
// which may be the request that removed the key.
func (s *streamLayer) closeRaft() { s.closeConns(false) }

func (s *streamLayer) closeConns(admin bool) {
	s.mu.Lock()
	conns := make([]*trackedConn, 0, len(s.conns))
	for c := range s.conns {
		if admin || !c.admin.Load() {
			conns = append(conns, c)
		}
	}
	s.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
}

type trackedConn struct {
	net.Conn
	s     *streamLayer
	once  sync.Once
	admin atomic.Bool // an admin-channel connection (ALPN adminALPN)
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
