package vip

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Modes of the `vip.mode` key.
const (
	// ModeNetlink adds and removes the address on a local interface and
	// announces it with gratuitous ARP (IPv4) or unsolicited neighbour
	// advertisements (IPv6).
	ModeNetlink = "netlink"
	// ModeNone manages no address (clouds, where a load balancer in front
	// of the nodes picks the leader from its health checks).
	ModeNone = "none"
)

// Config is the `vip` section of the configuration.
type Config struct {
	// Mode is ModeNetlink or ModeNone. Empty means ModeNetlink when
	// Address is set and ModeNone otherwise.
	Mode string `koanf:"mode"`
	// Address is the virtual IP with its prefix length ("10.0.0.100/24",
	// "2001:db8::100/64"). A bare address means a host prefix (/32, /128).
	Address string `koanf:"address"`
	// Interface is the link the address is added to ("eth0", "lo").
	Interface string `koanf:"interface"`
	// Label is an optional IPv4 address label ("eth0:vip"); it must start
	// with the interface name.
	Label string `koanf:"label"`
	// ARPCount is how many gratuitous ARP request+reply pairs (or
	// unsolicited neighbour advertisements) one announcement sends.
	ARPCount int `koanf:"arp_count"`
	// ARPInterval is the gap between the packets of one announcement.
	ARPInterval time.Duration `koanf:"arp_interval"`
	// ARPRepeat is how often the address is announced again while held,
	// so that caches that missed or dropped an announcement follow.
	ARPRepeat time.Duration `koanf:"arp_repeat"`
	// ARPProbe is how long to listen, before adding the address, for
	// another host answering an ARP probe for it (a conflict, logged and
	// shown in Status; the address is taken anyway). 0 disables the probe.
	ARPProbe time.Duration `koanf:"arp_probe"`
	// Lifetime, when positive, adds the address with this valid lifetime
	// (whole seconds) and renews it every check_interval, so that the
	// kernel itself removes it within about Lifetime (+1s) when this
	// process dies without removing it (kill -9, crash, OOM kill), and two
	// hosts do not keep answering for it. 0 adds a permanent address: one
	// left behind by a crash stays until the next start removes it.
	Lifetime time.Duration `koanf:"lifetime"`
	// OnAcquire and OnRelease are shell commands (run with `sh -c`) after
	// the address was added / removed, with REDHAVEN_VIP_ADDRESS,
	// REDHAVEN_VIP_PREFIX, REDHAVEN_VIP_INTERFACE and REDHAVEN_VIP_EVENT
	// (acquire, release) in their environment (and the agent's environment
	// without its REDHAVEN_* configuration variables). Empty: none.
	OnAcquire string `koanf:"on_acquire"`
	OnRelease string `koanf:"on_release"`
	// HookCapabilities lets hooks keep the agent's capabilities
	// (CAP_NET_ADMIN, CAP_NET_RAW from the unit's AmbientCapabilities).
	// Default false: hooks run with no capabilities (setpriv clears the
	// inheritable and ambient sets), so a hook script, or what it calls,
	// cannot change the host's network. An agent running as root gives its
	// hooks root's rights either way.
	HookCapabilities bool `koanf:"hook_capabilities"`
	// HookTimeout bounds each hook; the hook's process group is killed
	// when it passes.
	HookTimeout time.Duration `koanf:"hook_timeout"`
	// CheckInterval is how often the addresses on the link are compared
	// with the desired state (an address removed by someone else is put
	// back within about this long).
	CheckInterval time.Duration `koanf:"check_interval"`
}

// DefaultConfig returns the defaults: mode chosen from the address (none
// without one), 3 announcements 100ms apart repeated every 3s, a 100ms
// conflict probe, a 3s address lifetime renewed by a check every second,
// 10s hooks.
func DefaultConfig() Config {
	return Config{
		ARPCount:      3,
		ARPInterval:   100 * time.Millisecond,
		ARPRepeat:     3 * time.Second,
		ARPProbe:      100 * time.Millisecond,
		Lifetime:      3 * time.Second,
		HookTimeout:   10 * time.Second,
		CheckInterval: time.Second,
	}
}

// EffectiveMode is Mode, or when Mode is empty ModeNetlink if Address is
// set and ModeNone if not.
func (c Config) EffectiveMode() string {
	if c.Mode != "" {
		return c.Mode
	}
	if c.Address != "" {
		return ModeNetlink
	}
	return ModeNone
}

// maxIfName is the longest interface name (and address label) Linux
// accepts: IFNAMSIZ-1.
const maxIfName = 15

// Validate checks the configuration and names the bad key in each error.
func (c Config) Validate() error {
	var errs []error
	switch c.Mode {
	case "", ModeNetlink, ModeNone:
	default:
		errs = append(errs, fmt.Errorf("vip.mode: %q: want %q or %q", c.Mode, ModeNetlink, ModeNone))
	}
	if c.Address != "" {
		if _, err := ParseAddress(c.Address); err != nil {
			errs = append(errs, err)
		}
	}
	if c.EffectiveMode() == ModeNetlink {
		if c.Address == "" {
			errs = append(errs, errors.New("vip.address: required with vip.mode netlink (e.g. 10.0.0.100/24; or set vip.mode: none)"))
		}
		if err := checkIfName(c.Interface); err != nil {
			errs = append(errs, fmt.Errorf("vip.interface: %w", err))
		}
		if c.Label != "" {
			p, err := ParseAddress(c.Address)
			switch {
			case err == nil && p.Addr().Is6():
				errs = append(errs, fmt.Errorf("vip.label: %q: labels exist only for IPv4 addresses", c.Label))
			case len(c.Label) > maxIfName:
				errs = append(errs, fmt.Errorf("vip.label: %q: longer than %d characters", c.Label, maxIfName))
			case !strings.HasPrefix(c.Label, c.Interface):
				errs = append(errs, fmt.Errorf("vip.label: %q must start with the interface name %q (e.g. %s:vip)", c.Label, c.Interface, c.Interface))
			}
		}
	}
	if c.ARPCount < 1 || c.ARPCount > 100 {
		errs = append(errs, fmt.Errorf("vip.arp_count: must be between 1 and 100, got %d", c.ARPCount))
	}
	if c.ARPInterval < 0 || (c.ARPCount > 1 && c.ARPInterval < time.Millisecond) {
		errs = append(errs, fmt.Errorf("vip.arp_interval: must be at least 1ms, got %v", c.ARPInterval))
	}
	if c.ARPRepeat < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("vip.arp_repeat: must be at least 100ms, got %v", c.ARPRepeat))
	}
	if c.ARPCount > 1 && c.ARPRepeat <= time.Duration(c.ARPCount-1)*c.ARPInterval {
		errs = append(errs, fmt.Errorf("vip.arp_repeat: %v must be longer than one announcement (vip.arp_count-1 times vip.arp_interval = %v)",
			c.ARPRepeat, time.Duration(c.ARPCount-1)*c.ARPInterval))
	}
	if c.ARPProbe < 0 || c.ARPProbe > 10*time.Second {
		errs = append(errs, fmt.Errorf("vip.arp_probe: must be between 0 (off) and 10s, got %v", c.ARPProbe))
	}
	if c.Lifetime != 0 {
		switch {
		case c.Lifetime < time.Second || c.Lifetime%time.Second != 0:
			errs = append(errs, fmt.Errorf("vip.lifetime: must be 0 (permanent) or whole seconds, at least 1s, got %v", c.Lifetime))
		case c.Lifetime < 2*c.CheckInterval:
			errs = append(errs, fmt.Errorf("vip.lifetime: %v must be at least twice vip.check_interval (%v), which renews it", c.Lifetime, c.CheckInterval))
		}
	}
	if c.HookTimeout <= 0 {
		errs = append(errs, fmt.Errorf("vip.hook_timeout: must be positive, got %v", c.HookTimeout))
	}
	if c.CheckInterval < 10*time.Millisecond {
		errs = append(errs, fmt.Errorf("vip.check_interval: must be at least 10ms, got %v", c.CheckInterval))
	}
	return errors.Join(errs...)
}

// ParseAddress parses a `vip.address` value: an IPv4 or IPv6 unicast
// address with an optional prefix length (a bare address gets a host
// prefix). The host bits are kept: "10.0.0.100/24" stays 10.0.0.100/24.
func ParseAddress(s string) (netip.Prefix, error) {
	var p netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		if p, err = netip.ParsePrefix(s); err != nil {
			return netip.Prefix{}, fmt.Errorf("vip.address: %q: want an IP address with a prefix length, e.g. 10.0.0.100/24: %w", s, err)
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("vip.address: %q: want an IP address with a prefix length, e.g. 10.0.0.100/24: %w", s, err)
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	a := p.Addr()
	switch {
	case a.Zone() != "":
		return netip.Prefix{}, fmt.Errorf("vip.address: %q: no zone allowed (the interface is vip.interface)", s)
	case a.Is4In6():
		return netip.Prefix{}, fmt.Errorf("vip.address: %q: IPv4-mapped IPv6 address; write the IPv4 address", s)
	case a.IsUnspecified(), a.IsMulticast(), a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return netip.Prefix{}, fmt.Errorf("vip.address: %q: not a unicast address", s)
	}
	return p, nil
}

// checkIfName checks an interface name the way Linux does (dev_valid_name).
func checkIfName(name string) error {
	switch {
	case name == "":
		return errors.New("required with vip.mode netlink (e.g. eth0)")
	case len(name) > maxIfName:
		return fmt.Errorf("%q: longer than %d characters", name, maxIfName)
	case name == "." || name == "..", strings.ContainsAny(name, "/: \t\n"):
		return fmt.Errorf("%q: not a valid interface name", name)
	}
	return nil
}
