package node

import (
	"strings"
	"testing"

	"github.com/redhaven/redhaven/vip"
)

const vipYAML = `vip:
  address: 10.0.0.100/24
  interface: eth0
  lifetime: 4s
`

// TestServiceVIPConfig: a service's vip takes its address and interface
// (default vip.interface) and every other VIP setting from the vip
// section; the services without one share the vip section's VIP.
func TestServiceVIPConfig(t *testing.T) {
	cfg, _, err := Check(writeConfig(t, baseYAML+vipYAML+`services:
  - name: a
    listen: ":7000"
  - name: b
    listen: ":7001"
    vip:
      address: 10.0.0.101/24
  - name: c
    listen: ":7002"
    vip:
      address: 10.0.1.102/24
      interface: eth1
`), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	sc := cfg.ServiceConfigs()
	if sc[0].VIP != nil {
		t.Errorf("service a has a vip: %+v", sc[0].VIP)
	}
	for i, want := range []struct{ addr, ifname string }{{"10.0.0.101/24", "eth0"}, {"10.0.1.102/24", "eth1"}} {
		v := sc[i+1].VIP
		if v == nil || v.Address != want.addr || v.Interface != want.ifname || v.Lifetime.Seconds() != 4 || v.EffectiveMode() != vip.ModeNetlink {
			t.Errorf("service %s vip %+v, want %s on %s with the vip section's lifetime", sc[i+1].Name, v, want.addr, want.ifname)
		}
	}
	if got := cfg.SharedVIPServices(); len(got) != 1 || got[0] != "a" {
		t.Errorf("shared VIP services %v, want [a]", got)
	}
	if !strings.Contains(sc[1].summary(), "own VIP 10.0.0.101/24 on eth0") {
		t.Errorf("summary %q does not show the service's VIP", sc[1].summary())
	}
}

// TestServiceVIPErrors: every VIP needs its own address, and each error
// names the key and both services.
func TestServiceVIPErrors(t *testing.T) {
	entry := func(name, port, v string) string {
		s := "  - name: " + name + "\n    listen: \":" + port + "\"\n"
		if v != "" {
			s += "    vip:\n" + v
		}
		return s
	}
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{"two services one address", vipYAML + "services:\n" + entry("a", "7000", "") +
			entry("b", "7001", "      address: 10.0.0.101/24\n") + entry("c", "7002", "      address: 10.0.0.101/32\n"),
			[]string{`services[2].vip.address: 10.0.0.101 of service "c" is also services[1].vip.address of service "b"`}},
		{"service address is the shared one", vipYAML + "services:\n" + entry("a", "7000", "") + entry("d", "7003", "") +
			entry("b", "7001", "      address: 10.0.0.100/24\n"),
			[]string{`services[2].vip.address: 10.0.0.100 of service "b" is also vip.address, the VIP shared by service(s) "a", "d"`}},
		{"no address", vipYAML + "services:\n" + entry("a", "7000", "") + entry("b", "7001", "      interface: eth1\n"),
			[]string{"services[1].vip.address: required"}},
		{"bad address", vipYAML + "services:\n" + entry("b", "7001", "      address: 10.0.0.300/24\n"),
			[]string{`services[0].vip.address: "10.0.0.300/24"`}},
		{"no interface anywhere", "services:\n" + entry("b", "7001", "      address: 10.0.0.101/24\n"),
			[]string{"services[0].vip.interface: required"}},
		{"unknown key", vipYAML + "services:\n" + entry("b", "7001", "      address: 10.0.0.101/24\n      adress: x\n"),
			[]string{`unknown key "services[0].vip.adress" (did you mean "services[0].vip.address"?)`}},
		{"not a section", vipYAML + "services:\n  - name: b\n    vip: 10.0.0.101/24\n",
			[]string{`services[0].vip: got "10.0.0.101/24"; want a section`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := Check(writeConfig(t, baseYAML+tt.yaml), nil, nil)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
		})
	}
}
