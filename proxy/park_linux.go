package proxy

import (
	"errors"
	"fmt"
	"sync"

	"golang.org/x/sys/unix"
)

// idlePoller waits for input on parked sessions' sockets: one epoll
// instance and one goroutine for all of them (see park.go). Go's own
// poller keeps its registration of the socket; this one only decides when
// a goroutine is needed again.
type idlePoller struct {
	epfd, stopfd int
	mu           sync.Mutex
	parked       map[int32]*session // by socket descriptor
	closed       bool
	done         chan struct{}
}

func newIdlePoller() (*idlePoller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("idle poller: epoll_create1: %w", err)
	}
	stopfd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("idle poller: eventfd: %w", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(stopfd)}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, stopfd, &ev); err != nil {
		unix.Close(epfd)
		unix.Close(stopfd)
		return nil, fmt.Errorf("idle poller: epoll_ctl: %w", err)
	}
	p := &idlePoller{epfd: epfd, stopfd: stopfd, parked: map[int32]*session{}, done: make(chan struct{})}
	go p.loop()
	return p, nil
}

// park registers s's socket, unless s was kicked or closed since it
// decided to park (then it keeps running).
func (p *idlePoller) park(s *session) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	s.parked.Store(true) // before looking for a kick: kick stores, then looks here
	if s.kickPending.Load() || s.isClosed() {
		s.parked.Store(false)
		return false
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT, Fd: int32(s.fd)}
	if err := unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, s.fd, &ev); err != nil {
		s.parked.Store(false)
		s.debug("could not park idle session", "err", err)
		return false
	}
	p.parked[int32(s.fd)] = s
	return true
}

// unpark takes s out of the poller; false if it was not there (someone
// else took it up).
func (p *idlePoller) unpark(s *session) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.parked[int32(s.fd)] != s {
		return false
	}
	delete(p.parked, int32(s.fd))
	_ = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, s.fd, nil)
	s.parked.Store(false)
	s.l.parked.Add(-1)
	return true
}

func (p *idlePoller) loop() {
	defer close(p.done)
	events := make([]unix.EpollEvent, 128)
	for {
		n, err := unix.EpollWait(p.epfd, events, -1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return // only on a broken epoll descriptor; parked sessions are resumed by close
		}
		for _, ev := range events[:n] {
			if ev.Fd == int32(p.stopfd) {
				return
			}
			p.mu.Lock()
			s := p.parked[ev.Fd]
			p.mu.Unlock()
			if s != nil && p.unpark(s) {
				go s.serve()
			}
		}
	}
}

// close stops the poller; sessions still parked are resumed (they see the
// server stopping).
func (p *idlePoller) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	var one = [8]byte{1}
	_, _ = unix.Write(p.stopfd, one[:])
	<-p.done
	p.mu.Lock()
	left := make([]*session, 0, len(p.parked))
	for _, s := range p.parked {
		left = append(left, s)
	}
	p.mu.Unlock()
	for _, s := range left {
		if p.unpark(s) {
			go s.serve()
		}
	}
	unix.Close(p.epfd)
	unix.Close(p.stopfd)
}
