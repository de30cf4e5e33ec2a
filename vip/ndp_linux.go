package vip

import (
	"fmt"
	"net"
	"time"

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
