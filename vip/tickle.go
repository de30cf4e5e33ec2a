package vip

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"time"
)

// Conn is one TCP connection accepted on the VIP: Local is the VIP and
// the service's port, Remote the client.
type Conn struct {
	Local, Remote netip.AddrPort
}

// tickleSchedule is when, after the address left this host, its stray
// connections are closed (the first time) and their clients tickled:
// not at once (an address that comes back within 300 ms, a flap, keeps
// its connections), then again because the new holder may take the
// address only after an ARP probe or the old copy's lifetime, and a
// client answers at most one out-of-window segment per
// net.ipv4.tcp_invalid_ratelimit (500 ms) per connection.
var tickleSchedule = []time.Duration{300 * time.Millisecond, 800 * time.Millisecond, 1300 * time.Millisecond,
	1800 * time.Millisecond, 2500 * time.Millisecond, 3500 * time.Millisecond, 5 * time.Second}

// tickleSegment builds the "tickle ACK" for c (as CTDB sends after moving
// an address): a bare TCP ACK from c.Local to c.Remote with sequence and
// acknowledgement 0, out of the client's window. The client answers it
// with an ACK carrying its real numbers; that answer goes to whoever holds
// the address now, which has no such connection and resets it, so the
// client learns at once that the connection is gone instead of when it
// next sends (after its retransmission back-off) or times out waiting.
// It returns the IP packet (IPv4 or IPv6 header included).
func tickleSegment(c Conn) ([]byte, error) {
	src, dst := c.Local.Addr().Unmap(), c.Remote.Addr().Unmap()
	if src.Is4() != dst.Is4() || !src.IsValid() || !dst.IsValid() {
		return nil, errors.New("vip: tickle: mixed or invalid addresses")
	}
	tcp := make([]byte, 20)
	binary.BigEndian.PutUint16(tcp[0:], c.Local.Port())
	binary.BigEndian.PutUint16(tcp[2:], c.Remote.Port())
	// seq, ack: 0
	tcp[12] = 5 << 4 // data offset: 5 words, no options (no timestamp: PAWS does not apply)
	tcp[13] = 0x10   // ACK
	binary.BigEndian.PutUint16(tcp[14:], 1024)
	var pseudo []byte
	if src.Is4() {
		s, d := src.As4(), dst.As4()
		pseudo = append(append(append(pseudo, s[:]...), d[:]...), 0, 6, 0, byte(len(tcp)))
	} else {
		s, d := src.As16(), dst.As16()
		pseudo = append(append(append(pseudo, s[:]...), d[:]...), 0, 0, 0, byte(len(tcp)), 0, 0, 0, 6)
	}
	binary.BigEndian.PutUint16(tcp[16:], checksum(append(pseudo, tcp...)))

	if src.Is4() {
		ip := make([]byte, 20, 20+len(tcp))
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:], uint16(20+len(tcp)))
		ip[6] = 0x40 // don't fragment
		ip[8] = 64   // TTL
		ip[9] = 6    // TCP
		s, d := src.As4(), dst.As4()
		copy(ip[12:], s[:])
		copy(ip[16:], d[:])
		binary.BigEndian.PutUint16(ip[10:], checksum(ip))
		return append(ip, tcp...), nil
	}
	ip := make([]byte, 40, 40+len(tcp))
	ip[0] = 0x60
	binary.BigEndian.PutUint16(ip[4:], uint16(len(tcp)))
	ip[6] = 6  // next header: TCP
	ip[7] = 64 // hop limit
	s, d := src.As16(), dst.As16()
	copy(ip[8:], s[:])
	copy(ip[24:], d[:])
	return append(ip, tcp...), nil
}

// checksum is the Internet checksum (RFC 1071).
func checksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}
