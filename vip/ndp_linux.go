package vip

import (
	"fmt"
	"net"
	"time"

	"github.com/mdlayher/ethernet"

	"github.com/mdlayher/ndp"
	"golang.org/x/net/ipv6"
)

// announceNA sends one unsolicited neighbour advertisement for the VIP to
// all nodes on ifi, from the VIP itself.
func (s *netlinkSys) announceNA(ifi *net.Interface) error {
	if s.na == nil {
		c, _, err := ndp.Listen(ifi, ndp.Addr(s.prefix.Addr().String()))
		if err != nil {
			return fmt.Errorf("open icmpv6 socket: %w", err)
		}
		// The socket only sends: let nothing queue on it.
		var block ipv6.ICMPFilter
		block.SetAll(true)
		if err := c.SetICMPFilter(&block); err != nil {
			c.Close()
			return fmt.Errorf("icmpv6 filter: %w", err)
		}
		s.na, s.sockIf = c, ifi.Index
	}
	if err := s.na.SetWriteDeadline(time.Now().Add(time.Second)); err != nil {
		return err
	}
	if err := s.na.WriteTo(unsolicitedNA(ifi.HardwareAddr, s.prefix.Addr()), nil, allNodes); err != nil {
		return fmt.Errorf("send neighbour advertisement: %w", err)
	}
	return nil
}

// probeNS asks, as IPv6 duplicate address detection does (RFC 4862
// 5.4), whether another host has the VIP: a neighbour solicitation for it
// from the unspecified address to its solicited-node group (built whole
// and sent on a packet socket: the kernel will not send from ::), sent
// at the start and half-way through d. A host that has the address
// answers with a neighbour advertisement to all nodes. It returns that
// host's hardware address, or nil.
func (s *netlinkSys) probeNS(ifi *net.Interface, d time.Duration) (net.HardwareAddr, error) {
	frame, err := dadProbe(ifi.HardwareAddr, s.prefix.Addr())
	if err != nil {
		return nil, err
	}
	return probeLink(ifi, int(ethernet.EtherTypeIPv6), frame, d, func(b []byte) (net.HardwareAddr, bool) {
		return naFrameAnswer(b, ifi.HardwareAddr, s.prefix.Addr())
	})
}
