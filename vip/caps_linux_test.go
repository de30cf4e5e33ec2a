package vip

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
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

// capsHelperEnv makes TestNewNamesMissingCapability's helper print the
// error of New instead of testing.
const capsHelperEnv = "RHVIP_CAPS_HELPER"

// TestNewNamesMissingCapability: without CAP_NET_ADMIN, New fails at start
// with an error that names it and says how to grant it. As root, the check
// runs in a copy of this test binary started as nobody with no capabilities.
func TestNewNamesMissingCapability(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Address, cfg.Interface = "127.0.0.100/32", "lo"
	if os.Getenv(capsHelperEnv) != "" || os.Geteuid() != 0 {
		_, err := New(cfg, nil)
		if os.Getenv(capsHelperEnv) != "" {
			fmt.Println("NEW ERROR:", err)
			return
		}
		checkCapErr(t, err)
		return
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("setpriv (util-linux) not on PATH: cannot drop capabilities")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "vip.test")
	if err := copyFile(os.Args[0], bin); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all",
		bin, "-test.run=^TestNewNamesMissingCapability$")
	cmd.Env = append(os.Environ(), capsHelperEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper: %v: %s", err, out)
	}
	_, msg, ok := strings.Cut(string(out), "NEW ERROR: ")
	if !ok {
		t.Fatalf("helper printed no error: %s", out)
	}
	msg = strings.TrimSpace(strings.SplitN(msg, "\n", 2)[0])
	if msg == "<nil>" {
		checkCapErr(t, nil)
	}
	checkCapErr(t, errors.New(msg))
}

func checkCapErr(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		t.Fatal("New succeeded without CAP_NET_ADMIN")
	}
	for _, want := range []string{"missing CAP_NET_ADMIN", "AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW", "systemd unit"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("New error %q does not contain %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "missing CAP_NET_ADMIN and CAP_NET_RAW") {
		t.Errorf("New error %q asks for CAP_NET_RAW on loopback, where nothing is announced", err)
	}
}

func copyFile(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, b, 0o755)
}
