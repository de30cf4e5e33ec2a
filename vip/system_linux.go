package vip

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/mdlayher/ndp"
	"github.com/mdlayher/packet"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// netlinkTimeout bounds each netlink request.
const netlinkTimeout = 5 * time.Second

// openSystem checks, at New, that the interface exists and that the
// process has the capabilities it needs, and returns the function Run
// calls to open the OS side.
func openSystem(cfg Config, prefix netip.Prefix, enter enterFunc) (func() (system, error), error) {
	leave, err := enterNS(enter)
	if err != nil {
		return nil, err
	}
	link, err := netlink.LinkByName(cfg.Interface)
	leave()
	if err != nil {
		return nil, linkErr(cfg.Interface, err)
	}
	if err := checkCaps(announces(link)); err != nil {
		return nil, err
	}
	return func() (system, error) {
		leave, err := enterNS(enter)
		if err != nil {
			return nil, err
		}
		h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
		if err != nil {
			leave()
			return nil, fmt.Errorf("vip: open netlink: %w", permErr(err))
		}
		if err := h.SetSocketTimeout(netlinkTimeout); err != nil {
			h.Close()
			leave()
			return nil, fmt.Errorf("vip: netlink socket timeout: %w", err)
		}
		return &netlinkSys{cfg: cfg, prefix: prefix, h: h, leave: leave}, nil
	}, nil
}

// enterNS calls enter if set; the returned leave is never nil.
func enterNS(enter enterFunc) (func(), error) {
	if enter == nil {
		return func() {}, nil
	}
	leave, err := enter()
	if err != nil {
		return nil, fmt.Errorf("vip: enter network namespace: %w", err)
	}
	return leave, nil
}

// netlinkSys is the Linux system: addresses through netlink, gratuitous
// ARP through a packet socket, neighbour advertisements through an ICMPv6
// socket. The sockets are open while the address is held.
type netlinkSys struct {
	cfg    Config
	prefix netip.Prefix
	h      *netlink.Handle
	leave  func()

	arp    *packet.Conn // IPv4 announcements
	na     *ndp.Conn    // IPv6 announcements
	sockIf int          // interface index the socket is bound to
}

// link looks the interface up (each time: it may be recreated with
// another index).
func (s *netlinkSys) link() (netlink.Link, error) {
	link, err := s.h.LinkByName(s.cfg.Interface)
	if err != nil {
		return nil, linkErr(s.cfg.Interface, err)
	}
	return link, nil
}

func (s *netlinkSys) family() int {
	if s.prefix.Addr().Is4() {
		return netlink.FAMILY_V4
	}
	return netlink.FAMILY_V6
}

// matching returns the link's addresses whose IP is the VIP's.
func (s *netlinkSys) matching(link netlink.Link) ([]netlink.Addr, error) {
	addrs, err := s.h.AddrList(link, s.family())
	if err != nil {
		return nil, permErr(err)
	}
	var out []netlink.Addr
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok && ip.Unmap() == s.prefix.Addr() {
			out = append(out, a)
		}
	}
	return out, nil
}

func (s *netlinkSys) present() (bool, error) {
	link, err := s.link()
	if errors.Is(err, ErrUnknownInterface) {
		return false, nil // no link, no address; add says what is wrong
	}
	if err != nil {
		return false, err
	}
	found, err := s.matching(link)
	return len(found) > 0, err
}

func (s *netlinkSys) add() error {
	link, err := s.link()
	if err != nil {
		return err
	}
	ip := s.prefix.Addr()
	a := &netlink.Addr{
		IPNet: &net.IPNet{IP: ip.AsSlice(), Mask: net.CIDRMask(s.prefix.Bits(), ip.BitLen())},
		Label: s.cfg.Label,
	}
	if lft := int(s.cfg.Lifetime / time.Second); lft > 0 {
		a.ValidLft, a.PreferedLft = lft, lft
	}
	if ip.Is6() {
		// Usable at once: no duplicate address detection, which would keep
		// it tentative (unusable, unannounceable) for a second or more.
		a.Flags = unix.IFA_F_NODAD
	}
	return permErr(s.h.AddrReplace(link, a))
}

func (s *netlinkSys) remove() error {
	link, err := s.link()
	if err != nil {
		return err
	}
	found, err := s.matching(link)
	if err != nil {
		return err
	}
	for _, a := range found {
		if err := s.h.AddrDel(link, &a); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			return permErr(err)
		}
	}
	return nil
}

func (s *netlinkSys) announce() (bool, error) {
	link, err := s.link()
	if err != nil {
		return false, err
	}
	if !announces(link) {
		return false, nil
	}
	ifi := netInterface(link)
	if s.sockIf != ifi.Index {
		s.release()
	}
	if s.prefix.Addr().Is4() {
		err = s.announceARP(ifi)
	} else {
		err = s.announceNA(ifi)
	}
	if err != nil {
		s.release() // reopen next time
		return false, permErr(err)
	}
	return true, nil
}

func (s *netlinkSys) release() {
	if s.arp != nil {
		s.arp.Close()
		s.arp = nil
	}
	if s.na != nil {
		s.na.Close()
		s.na = nil
	}
	s.sockIf = 0
}

func (s *netlinkSys) close() {
	s.release()
	s.h.Close()
	s.leave()
}

// announces reports whether the VIP is announced on link: not on loopback,
// nor on links without an Ethernet address (tun, WireGuard).
func announces(link netlink.Link) bool {
	a := link.Attrs()
	return a.Flags&net.FlagLoopback == 0 && len(a.HardwareAddr) == 6
}

// netInterface is link as the net package describes it.
func netInterface(link netlink.Link) *net.Interface {
	a := link.Attrs()
	return &net.Interface{Index: a.Index, MTU: a.MTU, Name: a.Name, HardwareAddr: a.HardwareAddr, Flags: a.Flags}
}

// linkErr names the interface, and says so when it does not exist.
func linkErr(name string, err error) error {
	var nf netlink.LinkNotFoundError
	if errors.As(err, &nf) {
		return fmt.Errorf("vip.interface: %q: %w", name, ErrUnknownInterface)
	}
	return fmt.Errorf("vip.interface: look up %q: %w", name, permErr(err))
}

func (s *netlinkSys) tickler() (tickleSender, error) { return openTickler() }
