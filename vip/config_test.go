package vip

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	good := func(mod func(*Config)) Config {
		c := DefaultConfig()
		c.Mode = ModeNetlink
		c.Address = "10.0.0.100/24"
		c.Interface = "eth0"
		if mod != nil {
			mod(&c)
		}
		return c
	}
	tests := []struct {
		name string
		cfg  Config
		want []string // substrings of the error; none means valid
	}{
		{"netlink ipv4", good(nil), nil},
		{"netlink ipv6", good(func(c *Config) { c.Address = "2001:db8::100/64" }), nil},
		{"bare address", good(func(c *Config) { c.Address = "10.0.0.100" }), nil},
		{"loopback demo", good(func(c *Config) { c.Address = "127.0.0.100/32"; c.Interface = "lo" }), nil},
		{"label", good(func(c *Config) { c.Label = "eth0:vip" }), nil},
		{"defaults are valid (mode none)", DefaultConfig(), nil},
		{"mode empty with address is netlink", good(func(c *Config) { c.Mode = ""; c.Interface = "" }), []string{"vip.interface: required"}},
		{"mode none ignores interface", good(func(c *Config) { c.Mode = ModeNone; c.Interface = "" }), nil},
		{"bad mode", good(func(c *Config) { c.Mode = "vrrp" }), []string{`vip.mode: "vrrp"`}},
		{"netlink needs address", good(func(c *Config) { c.Address = "" }), []string{"vip.address: required"}},
		{"bad address", good(func(c *Config) { c.Address = "10.0.0.300/24" }), []string{`vip.address: "10.0.0.300/24"`}},
		{"bad prefix", good(func(c *Config) { c.Address = "10.0.0.1/33" }), []string{"vip.address"}},
		{"hostname", good(func(c *Config) { c.Address = "vip.example.com" }), []string{"vip.address"}},
		{"multicast", good(func(c *Config) { c.Address = "224.0.0.5/32" }), []string{"vip.address", "not a unicast"}},
		{"unspecified", good(func(c *Config) { c.Address = "0.0.0.0/0" }), []string{"vip.address", "not a unicast"}},
		{"zone", good(func(c *Config) { c.Address = "fe80::1%eth0/64" }), []string{"vip.address", "zone"}},
		{"mapped", good(func(c *Config) { c.Address = "::ffff:10.0.0.1/128" }), []string{"vip.address", "IPv4-mapped"}},
		{"bad address in mode none", good(func(c *Config) { c.Mode = ModeNone; c.Address = "nope" }), []string{"vip.address"}},
		{"no interface", good(func(c *Config) { c.Interface = "" }), []string{"vip.interface: required"}},
		{"long interface", good(func(c *Config) { c.Interface = "averyveryverylongname" }), []string{"vip.interface", "longer than 15"}},
		{"interface with slash", good(func(c *Config) { c.Interface = "eth/0" }), []string{"vip.interface", "not a valid"}},
		{"label not prefixed", good(func(c *Config) { c.Label = "vip" }), []string{"vip.label", "must start with"}},
		{"label too long", good(func(c *Config) { c.Label = "eth0:0123456789ab" }), []string{"vip.label", "longer than 15"}},
		{"label on ipv6", good(func(c *Config) { c.Address = "2001:db8::1/64"; c.Label = "eth0:v" }), []string{"vip.label", "IPv4"}},
		{"arp count 0", good(func(c *Config) { c.ARPCount = 0 }), []string{"vip.arp_count"}},
		{"arp interval 0", good(func(c *Config) { c.ARPInterval = 0 }), []string{"vip.arp_interval"}},
		{"arp interval 0 single", good(func(c *Config) { c.ARPCount = 1; c.ARPInterval = 0 }), nil},
		{"arp repeat 0", good(func(c *Config) { c.ARPRepeat = 0 }), []string{"vip.arp_repeat"}},
		{"arp repeat shorter than burst", good(func(c *Config) { c.ARPCount = 10; c.ARPInterval = time.Second }), []string{"vip.arp_repeat", "longer than one announcement"}},
		{"arp probe negative", good(func(c *Config) { c.ARPProbe = -time.Second }), []string{"vip.arp_probe"}},
		{"arp probe off", good(func(c *Config) { c.ARPProbe = 0 }), nil},
		{"lifetime off", good(func(c *Config) { c.Lifetime = 0 }), nil},
		{"lifetime fraction", good(func(c *Config) { c.Lifetime = 1500 * time.Millisecond }), []string{"vip.lifetime", "whole seconds"}},
		{"lifetime below check interval", good(func(c *Config) { c.Lifetime = time.Second; c.CheckInterval = time.Second }), []string{"vip.lifetime", "twice vip.check_interval"}},
		{"hook timeout", good(func(c *Config) { c.HookTimeout = 0 }), []string{"vip.hook_timeout"}},
		{"check interval", good(func(c *Config) { c.CheckInterval = time.Millisecond }), []string{"vip.check_interval"}},
		{"several errors", good(func(c *Config) { c.ARPCount = 0; c.HookTimeout = 0 }), []string{"vip.arp_count", "vip.hook_timeout"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want error with %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %q, want it to contain %q", err, w)
				}
			}
		})
	}
}

func TestParseAddress(t *testing.T) {
	tests := []struct {
		in   string
		want netip.Prefix
	}{
		{"10.0.0.100/24", netip.MustParsePrefix("10.0.0.100/24")},
		{"10.0.0.100", netip.MustParsePrefix("10.0.0.100/32")},
		{"2001:db8::100/64", netip.MustParsePrefix("2001:db8::100/64")},
		{"2001:db8::100", netip.MustParsePrefix("2001:db8::100/128")},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseAddress(tt.in)
			if err != nil || got != tt.want {
				t.Fatalf("ParseAddress(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestEffectiveMode(t *testing.T) {
	tests := []struct {
		mode, address, want string
	}{
		{"", "", ModeNone},
		{"", "10.0.0.1/24", ModeNetlink},
		{ModeNone, "10.0.0.1/24", ModeNone},
		{ModeNetlink, "", ModeNetlink},
	}
	for _, tt := range tests {
		c := Config{Mode: tt.mode, Address: tt.address}
		if got := c.EffectiveMode(); got != tt.want {
			t.Errorf("Config{Mode: %q, Address: %q}.EffectiveMode() = %q, want %q", tt.mode, tt.address, got, tt.want)
		}
	}
}
