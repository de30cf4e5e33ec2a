package vip

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
)

// gratuitousARP returns the Ethernet frames of one gratuitous ARP
// announcement of ip at mac: a request and a reply, both broadcast, with
// sender and target IP set to ip and the broadcast target hardware
// address (as kube-vip and keepalived send them). Caches that hold an
// entry for ip update it from either; some hosts only heed one kind.
func gratuitousARP(mac net.HardwareAddr, ip netip.Addr) ([][]byte, error) {
	var frames [][]byte
	for _, op := range []arp.Operation{arp.OperationRequest, arp.OperationReply} {
		p, err := arp.NewPacket(op, mac, ip, ethernet.Broadcast, ip)
		if err != nil {
			return nil, fmt.Errorf("build gratuitous arp for %s at %s: %w", ip, mac, err)
		}
		f, err := arpFrame(p, ethernet.Broadcast)
		if err != nil {
			return nil, err
		}
		frames = append(frames, f)
	}
	return frames, nil
}

// arpProbe returns the Ethernet frame of an RFC 5227 ARP probe for ip:
// a broadcast request from mac with sender IP 0.0.0.0 and an all-zero
// target hardware address. A host that has ip answers it.
func arpProbe(mac net.HardwareAddr, ip netip.Addr) ([]byte, error) {
	p, err := arp.NewPacket(arp.OperationRequest, mac, netip.IPv4Unspecified(), make(net.HardwareAddr, len(mac)), ip)
	if err != nil {
		return nil, fmt.Errorf("build arp probe for %s at %s: %w", ip, mac, err)
	}
	return arpFrame(p, ethernet.Broadcast)
}

// arpFrame wraps an ARP packet in an Ethernet frame from its sender.
func arpFrame(p *arp.Packet, dst net.HardwareAddr) ([]byte, error) {
	pb, err := p.MarshalBinary()
	if err != nil {
		return nil, err
	}
	f := &ethernet.Frame{
		Destination: dst,
		Source:      p.SenderHardwareAddr,
		EtherType:   ethernet.EtherTypeARP,
		Payload:     pb,
	}
	return f.MarshalBinary()
}

// probeAnswer reports whether frame shows another host (not ours) using
// ip: an ARP packet whose sender IP is ip from another hardware address.
// It returns that address.
func probeAnswer(frame []byte, ours net.HardwareAddr, ip netip.Addr) (net.HardwareAddr, bool) {
	var f ethernet.Frame
	if err := f.UnmarshalBinary(frame); err != nil || f.EtherType != ethernet.EtherTypeARP {
		return nil, false
	}
	var p arp.Packet
	if err := p.UnmarshalBinary(f.Payload); err != nil {
		return nil, false
	}
	if p.SenderIP != ip || bytes.Equal(p.SenderHardwareAddr, ours) {
		return nil, false
	}
	return p.SenderHardwareAddr, true
}

// allNodes is the IPv6 all-nodes multicast group, where unsolicited
// neighbour advertisements go.
var allNodes = netip.MustParseAddr("ff02::1")

// unsolicitedNA is the unsolicited neighbour advertisement of ip at mac
// (RFC 4861 7.2.6): override set so that caches replace the old link
// address, solicited clear, the target link-layer address option set.
func unsolicitedNA(mac net.HardwareAddr, ip netip.Addr) *ndp.NeighborAdvertisement {
	return &ndp.NeighborAdvertisement{
		Override:      true,
		TargetAddress: ip,
		Options: []ndp.Option{&ndp.LinkLayerAddress{
			Direction: ndp.Target,
			Addr:      mac,
		}},
	}
}

// dadProbe returns the Ethernet frame of a neighbour solicitation for ip
// from the unspecified address to ip's solicited-node group, as duplicate
// address detection sends it (RFC 4862 5.4): a host that has ip answers
// with a neighbour advertisement to all nodes.
func dadProbe(mac net.HardwareAddr, ip netip.Addr) ([]byte, error) {
	group, err := ndp.SolicitedNodeMulticast(ip)
	if err != nil {
		return nil, err
	}
	icmp, err := ndp.MarshalMessageChecksum(&ndp.NeighborSolicitation{TargetAddress: ip}, netip.IPv6Unspecified(), group)
	if err != nil {
		return nil, fmt.Errorf("build neighbour solicitation for %s: %w", ip, err)
	}
	pkt := make([]byte, 40, 40+len(icmp))
	pkt[0] = 0x60 // version 6
	binary.BigEndian.PutUint16(pkt[4:6], uint16(len(icmp)))
	pkt[6], pkt[7] = ipProtoICMPv6, 255 // next header, hop limit (RFC 4861)
	g := group.As16()
	copy(pkt[24:40], g[:]) // the source stays :: (zeros)
	f := &ethernet.Frame{
		Destination: net.HardwareAddr{0x33, 0x33, g[12], g[13], g[14], g[15]},
		Source:      mac,
		EtherType:   ethernet.EtherTypeIPv6,
		Payload:     append(pkt, icmp...),
	}
	return f.MarshalBinary()
}

const ipProtoICMPv6 = 58

// naFrameAnswer reports whether frame is another host's neighbour
// advertisement for ip and returns its link-layer address (the target
// link-layer option, else the frame's source).
func naFrameAnswer(frame []byte, ours net.HardwareAddr, ip netip.Addr) (net.HardwareAddr, bool) {
	var f ethernet.Frame
	if err := f.UnmarshalBinary(frame); err != nil || f.EtherType != ethernet.EtherTypeIPv6 ||
		len(f.Payload) < 40 || f.Payload[6] != ipProtoICMPv6 || bytes.Equal(f.Source, ours) {
		return nil, false
	}
	n := int(binary.BigEndian.Uint16(f.Payload[4:6]))
	if 40+n > len(f.Payload) {
		return nil, false
	}
	m, err := ndp.ParseMessage(f.Payload[40 : 40+n])
	if err != nil {
		return nil, false
	}
	na, ok := m.(*ndp.NeighborAdvertisement)
	if !ok || na.TargetAddress != ip {
		return nil, false
	}
	mac := f.Source
	for _, o := range na.Options {
		if ll, ok := o.(*ndp.LinkLayerAddress); ok && ll.Direction == ndp.Target {
			mac = ll.Addr
		}
	}
	return mac, true
}
