// Package vip holds a virtual IP address on a local interface when told
// to: it adds and removes the address with netlink, announces it with
// gratuitous ARP (IPv4) or unsolicited neighbour advertisements (IPv6)
// right away and then periodically, puts it back if something else
// removes it, and runs the on_acquire / on_release hooks.
//
// It is mechanism only. Manager.SetDesired(bool) is a level-triggered
// desire; Run compares it with the addresses actually on the link on every
// call and every check_interval. Who should hold the address (the healthy
// Raft leader) is decided by the caller. See DESIGN.md for the why.
package vip
