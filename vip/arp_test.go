package vip

import (
	"bytes"
	"encoding/hex"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
)

// unhex turns "ff ff ..." (spaces and newlines ignored) into bytes.
func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var (
	testMAC   = net.HardwareAddr{0x02, 0x42, 0xac, 0x11, 0x00, 0x02}
	otherMAC  = net.HardwareAddr{0x02, 0x00, 0x5e, 0x00, 0x00, 0x09}
	testVIP   = netip.MustParseAddr("10.0.0.100")
	testVIPv6 = netip.MustParseAddr("2001:db8::100")
)

// TestGratuitousARPBytes checks the announcement frames byte by byte (as
// kube-vip does): Ethernet broadcast from our MAC, EtherType ARP, then an
// ARP request and a reply for the VIP with sender IP = target IP = VIP and
// the broadcast target hardware address, padded to Ethernet's minimum.
func TestGratuitousARPBytes(t *testing.T) {
	frames, err := gratuitousARP(testMAC, testVIP)
	if err != nil {
		t.Fatal(err)
	}
	const pad = "000000000000000000000000000000000000" // 18 bytes: 28-byte ARP padded to 46
	want := []struct {
		name  string
		bytes string
	}{
		{"request", `
			ffffffffffff 0242ac110002 0806
			0001 0800 06 04 0001
			0242ac110002 0a000064
			ffffffffffff 0a000064` + pad},
		{"reply", `
			ffffffffffff 0242ac110002 0806
			0001 0800 06 04 0002
			0242ac110002 0a000064
			ffffffffffff 0a000064` + pad},
	}
	if len(frames) != len(want) {
		t.Fatalf("got %d frames, want %d", len(frames), len(want))
	}
	for i, w := range want {
		t.Run(w.name, func(t *testing.T) {
			wb := unhex(t, w.bytes)
			if len(wb) != 60 {
				t.Fatalf("test bug: want %d bytes, Ethernet minimum is 60", len(wb))
			}
			if !bytes.Equal(frames[i], wb) {
				t.Fatalf("frame\n got  %x\n want %x", frames[i], wb)
			}
		})
	}
}

func TestARPProbeBytes(t *testing.T) {
	got, err := arpProbe(testMAC, testVIP)
	if err != nil {
		t.Fatal(err)
	}
	// RFC 5227 2.1.1: request, sender IP 0.0.0.0, target hardware zero.
	want := unhex(t, `
		ffffffffffff 0242ac110002 0806
		0001 0800 06 04 0001
		0242ac110002 00000000
		000000000000 0a000064
		000000000000000000000000000000000000`)
	if !bytes.Equal(got, want) {
		t.Fatalf("probe\n got  %x\n want %x", got, want)
	}
}

func TestProbeAnswer(t *testing.T) {
	reply := func(mac net.HardwareAddr, ip string) []byte {
		// An ARP reply to our probe, the way Linux sends it.
		b := unhex(t, "0242ac110002"+hex.EncodeToString(mac)+"0806 0001 0800 06 04 0002")
		b = append(b, mac...)
		b = append(b, netip.MustParseAddr(ip).AsSlice()...)
		b = append(b, testMAC...)
		b = append(b, 0, 0, 0, 0)
		return b
	}
	ownGARP, _ := gratuitousARP(testMAC, testVIP)
	probe, _ := arpProbe(testMAC, testVIP)
	tests := []struct {
		name    string
		frame   []byte
		wantMAC net.HardwareAddr
	}{
		{"another host answers", reply(otherMAC, "10.0.0.100"), otherMAC},
		{"another host announces", mustGARP(t, otherMAC), otherMAC},
		{"answer for another ip", reply(otherMAC, "10.0.0.7"), nil},
		{"our own announcement", ownGARP[0], nil},
		{"our own probe", probe, nil},
		{"not arp", append(unhex(t, "ffffffffffff 020000000001 0800"), make([]byte, 46)...), nil},
		{"truncated", []byte{1, 2, 3}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mac, ok := probeAnswer(tt.frame, testMAC, testVIP)
			if ok != (tt.wantMAC != nil) || mac.String() != tt.wantMAC.String() {
				t.Fatalf("probeAnswer = %v, %v; want %v", mac, ok, tt.wantMAC)
			}
		})
	}
}

func mustGARP(t *testing.T, mac net.HardwareAddr) []byte {
	f, err := gratuitousARP(mac, testVIP)
	if err != nil {
		t.Fatal(err)
	}
	return f[1]
}

// TestUnsolicitedNABytes checks the ICMPv6 body of the IPv6 announcement:
// type 136, override flag only, target = VIP, target link-layer option
// with our MAC (the checksum is left to the kernel).
func TestUnsolicitedNABytes(t *testing.T) {
	got, err := ndp.MarshalMessage(unsolicitedNA(testMAC, testVIPv6))
	if err != nil {
		t.Fatal(err)
	}
	want := unhex(t, `
		88 00 0000
		20000000
		20010db8000000000000000000000100
		02 01 0242ac110002`)
	if !bytes.Equal(got, want) {
		t.Fatalf("neighbour advertisement\n got  %x\n want %x", got, want)
	}
}

// TestDADProbeAndAnswer: the IPv6 probe is a neighbour solicitation from
// :: to the target's solicited-node group (RFC 4862 5.4), and an NA for the
// VIP from another host is recognised (ours and other targets are not).
func TestDADProbeAndAnswer(t *testing.T) {
	ours := net.HardwareAddr{0x02, 0, 0, 0, 0, 1}
	other := net.HardwareAddr{0x02, 0, 0, 0, 0, 2}
	vip := netip.MustParseAddr("2001:db8::1:100")
	b, err := dadProbe(ours, vip)
	if err != nil {
		t.Fatal(err)
	}
	var f ethernet.Frame
	if err := f.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if want := (net.HardwareAddr{0x33, 0x33, 0xff, 0x01, 0x01, 0x00}); !bytes.Equal(f.Destination, want) {
		t.Errorf("destination %s, want %s", f.Destination, want)
	}
	p := f.Payload
	src, _ := netip.AddrFromSlice(p[8:24])
	dst, _ := netip.AddrFromSlice(p[24:40])
	if p[0]>>4 != 6 || p[6] != 58 || p[7] != 255 || !src.IsUnspecified() || dst != netip.MustParseAddr("ff02::1:ff01:100") {
		t.Fatalf("ipv6 header: version %d next %d hop %d src %s dst %s", p[0]>>4, p[6], p[7], src, dst)
	}
	m, err := ndp.ParseMessage(p[40:])
	if ns, ok := m.(*ndp.NeighborSolicitation); err != nil || !ok || ns.TargetAddress != vip {
		t.Fatalf("payload %#v (%v), want a solicitation for %s", m, err, vip)
	}

	na := func(from net.HardwareAddr, target netip.Addr) []byte {
		icmp, err := ndp.MarshalMessageChecksum(unsolicitedNA(from, target), netip.MustParseAddr("fe80::2"), allNodes)
		if err != nil {
			t.Fatal(err)
		}
		hdr := make([]byte, 40)
		hdr[0], hdr[6], hdr[7] = 0x60, 58, 255
		hdr[4], hdr[5] = byte(len(icmp)>>8), byte(len(icmp))
		fb, err := (&ethernet.Frame{Destination: net.HardwareAddr{0x33, 0x33, 0, 0, 0, 1}, Source: from,
			EtherType: ethernet.EtherTypeIPv6, Payload: append(hdr, icmp...)}).MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		return fb
	}
	if mac, ok := naFrameAnswer(na(other, vip), ours, vip); !ok || !bytes.Equal(mac, other) {
		t.Errorf("answer from another host: %s %v, want %s", mac, ok, other)
	}
	if _, ok := naFrameAnswer(na(ours, vip), ours, vip); ok {
		t.Error("our own advertisement counted as an answer")
	}
	if _, ok := naFrameAnswer(na(other, netip.MustParseAddr("2001:db8::7")), ours, vip); ok {
		t.Error("an advertisement for another address counted")
	}
	if _, ok := naFrameAnswer(b, ours, vip); ok {
		t.Error("a solicitation counted as an answer")
	}
}
