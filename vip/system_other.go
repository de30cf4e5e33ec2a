//go:build !linux

package vip

import "net/netip"

// openSystem: addresses are managed with netlink, on Linux only.
func openSystem(Config, netip.Prefix, enterFunc) (func() (system, error), error) {
	return nil, ErrUnsupported
}
