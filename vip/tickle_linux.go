package vip

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// rawTickler sends tickle ACKs through raw sockets with our own IP header
// (IPPROTO_RAW implies IP_HDRINCL, and IPV6_HDRINCL since Linux 4.5), so
// the source can be the VIP although this host no longer has it. Needs
// CAP_NET_RAW, which the VIP already needs for gratuitous ARP.
type rawTickler struct {
	fd4, fd6 int
}

// openTickler opens the raw sockets in the calling thread's network
// namespace (Run's goroutine: the namespace the VIP lives in).
func openTickler() (tickleSender, error) {
	t := &rawTickler{fd4: -1, fd6: -1}
	var errs []error
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
	if err != nil {
		errs = append(errs, fmt.Errorf("ipv4: %w", err))
	} else {
		t.fd4 = fd
	}
	fd, err = unix.Socket(unix.AF_INET6, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
	if err != nil {
		errs = append(errs, fmt.Errorf("ipv6: %w", err))
	} else {
		t.fd6 = fd
	}
	if t.fd4 < 0 && t.fd6 < 0 {
		return nil, fmt.Errorf("vip: raw socket for tickle ACKs: %w", permErr(errors.Join(errs...)))
	}
	return t, nil
}

func (t *rawTickler) send(conns []Conn) error {
	var errs []error
	for _, c := range conns {
		pkt, err := tickleSegment(c)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		dst := c.Remote.Addr().Unmap()
		if dst.Is4() {
			if t.fd4 < 0 {
				continue
			}
			err = unix.Sendto(t.fd4, pkt, 0, &unix.SockaddrInet4{Addr: dst.As4()})
		} else {
			if t.fd6 < 0 {
				continue
			}
			err = unix.Sendto(t.fd6, pkt, 0, &unix.SockaddrInet6{Addr: dst.As16()})
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("tickle %s: %w", c.Remote, err))
		}
		if len(errs) > 3 {
			break // the same fault for every connection: say it once
		}
	}
	return errors.Join(errs...)
}

func (t *rawTickler) close() {
	for _, fd := range []int{t.fd4, t.fd6} {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
}
