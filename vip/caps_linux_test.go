package vip

import (
	"bufio"
	"errors"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
)

func TestMissingCaps(t *testing.T) {
	status := func(eff string) *bufio.Scanner {
		return bufio.NewScanner(strings.NewReader("Name:\tredhaven\nCapInh:\t0000000000000000\nCapPrm:\t" + eff + "\nCapEff:\t" + eff + "\nCapBnd:\t000001ffffffffff\n"))
	}
	tests := []struct {
		name    string
		eff     string
		needRaw bool
		want    []string
	}{
		{"root", "000001ffffffffff", true, nil},
		{"nothing", "0000000000000000", true, []string{"CAP_NET_ADMIN", "CAP_NET_RAW"}},
		{"nothing, loopback", "0000000000000000", false, []string{"CAP_NET_ADMIN"}},
		{"net admin only", "0000000000001000", true, []string{"CAP_NET_RAW"}},
		{"net admin only, loopback", "0000000000001000", false, nil},
		{"net raw only", "0000000000002000", true, []string{"CAP_NET_ADMIN"}},
		{"both", "0000000000003000", true, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := missingCaps(status(tt.eff), tt.needRaw)
			if !slices.Equal(got, tt.want) {
				t.Fatalf("missingCaps(CapEff %s, needRaw %v) = %q, want %q", tt.eff, tt.needRaw, got, tt.want)
			}
		})
	}
	if got := missingCaps(bufio.NewScanner(strings.NewReader("Name:\tx\n")), true); got != nil {
		t.Errorf("no CapEff line: missingCaps = %q, want nil (let the kernel decide)", got)
	}
}

func TestPermErrSaysHowToGrant(t *testing.T) {
	err := linkErr("eth0", errors.New("boom"))
	if !strings.Contains(err.Error(), `vip.interface: look up "eth0"`) {
		t.Errorf("linkErr = %q", err)
	}
	err = permErr(os.NewSyscallError("socket", syscall.EPERM))
	if !errors.Is(err, ErrPermission) {
		t.Fatalf("permErr(EPERM) = %v, want it to wrap ErrPermission", err)
	}
	for _, want := range []string{"CAP_NET_ADMIN", "AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW", "systemd unit"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("permErr(EPERM) = %q, want it to contain %q", err, want)
		}
	}
}
