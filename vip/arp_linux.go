package vip

import (
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/packet"
	"golang.org/x/net/bpf"
)

// etherTypeARP is the EtherType the ARP sockets bind to.
const etherTypeARP = int(ethernet.EtherTypeARP)

// dropAll is a socket filter that accepts nothing: the announcing socket
// only sends, and should not queue the ARP traffic it would receive.
var dropAll = mustAssemble(bpf.RetConstant{Val: 0})

func mustAssemble(insns ...bpf.Instruction) []bpf.RawInstruction {
	raw, err := bpf.Assemble(insns)
	if err != nil {
		panic(err) // a constant program
	}
	return raw
}

// announceARP sends one gratuitous ARP request and reply on ifi.
func (s *netlinkSys) announceARP(ifi *net.Interface) error {
	if s.arp == nil {
		c, err := packet.Listen(ifi, packet.Raw, etherTypeARP, &packet.Config{Filter: dropAll})
		if err != nil {
			return fmt.Errorf("open arp socket: %w", err)
		}
		s.arp, s.sockIf = c, ifi.Index
	}
	frames, err := gratuitousARP(ifi.HardwareAddr, s.prefix.Addr())
	if err != nil {
		return err
	}
	if err := s.arp.SetWriteDeadline(time.Now().Add(time.Second)); err != nil {
		return err
	}
	for _, f := range frames {
		if _, err := s.arp.WriteTo(f, &packet.Addr{HardwareAddr: ethernet.Broadcast}); err != nil {
			return fmt.Errorf("send gratuitous arp: %w", err)
		}
	}
	return nil
}

// probe sends ARP probes for the VIP (at the start and half-way) and
// listens for d for another host answering for it (IPv6: neighbour
// solicitations, probeNS). Loopback and links without an Ethernet address
// are not probed (nil).
func (s *netlinkSys) probe(d time.Duration) (net.HardwareAddr, error) {
	link, err := s.link()
	if err != nil {
		return nil, err
	}
	if !announces(link) {
		return nil, nil // loopback and links without a hardware address: no other host
	}
	ifi := netInterface(link)
	if !s.prefix.Addr().Is4() {
		return s.probeNS(ifi, d)
	}
	frame, err := arpProbe(ifi.HardwareAddr, s.prefix.Addr())
	if err != nil {
		return nil, err
	}
	return probeLink(ifi, etherTypeARP, frame, d, func(b []byte) (net.HardwareAddr, bool) {
		return probeAnswer(b, ifi.HardwareAddr, s.prefix.Addr())
	})
}

// probeLink sends frame on a packet socket of etherType at the start and
// half-way through d, and returns the first answer that match finds in
// the frames received meanwhile (nil when none came).
func probeLink(ifi *net.Interface, etherType int, frame []byte, d time.Duration,
	match func([]byte) (net.HardwareAddr, bool)) (net.HardwareAddr, error) {
	c, err := packet.Listen(ifi, packet.Raw, etherType, nil)
	if err != nil {
		return nil, fmt.Errorf("open probe socket: %w", permErr(err))
	}
	defer c.Close()
	start := time.Now()
	end := start.Add(d)
	second := start.Add(d / 2)
	sentSecond := false
	if err := c.SetWriteDeadline(end.Add(time.Second)); err != nil {
		return nil, err
	}
	if _, err := c.WriteTo(frame, &packet.Addr{HardwareAddr: ethernet.Broadcast}); err != nil {
		return nil, fmt.Errorf("send probe: %w", permErr(err))
	}
	buf := make([]byte, 1514)
	for {
		deadline := end
		if !sentSecond {
			deadline = second
		}
		if err := c.SetReadDeadline(deadline); err != nil {
			return nil, err
		}
		n, _, err := c.ReadFrom(buf)
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			if sentSecond {
				return nil, nil
			}
			sentSecond = true
			if _, err := c.WriteTo(frame, &packet.Addr{HardwareAddr: ethernet.Broadcast}); err != nil {
				return nil, fmt.Errorf("send probe: %w", err)
			}
			continue
		case err != nil:
			return nil, fmt.Errorf("read probe answers: %w", err)
		}
		if mac, ok := match(buf[:n]); ok {
			return mac, nil
		}
	}
}
