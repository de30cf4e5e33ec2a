package vip

import (
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redhaven/redhaven/e2e/testutil"
)

// TestHookCapabilities runs a hook the way the packaged unit runs the agent:
// as an unprivileged user holding CAP_NET_ADMIN as an ambient capability (a
// copy of this test binary under setpriv plays the agent). The hook must
// end up with no capabilities by default and keep them with
// vip.hook_capabilities: true.
func TestHookCapabilities(t *testing.T) {
	if os.Getenv("REDHAVEN_HOOKCAPS_CHILD") != "" {
		t.Skip("child side, run by TestHookCapabilitiesChild")
	}
	if os.Geteuid() != 0 {
		testutil.Require(t, "netns", "not root (the test starts an unprivileged process with an ambient capability)")
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Fatalf("setpriv (util-linux) not found: %v", err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	// The unprivileged stand-in writes here (t.TempDir's parent is 0700).
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o777); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(dir, "vip.test")
	if err := copyFile(exe, bin); err != nil {
		t.Fatal(err)
	}

	for _, keep := range []bool{false, true} {
		t.Run(fmt.Sprintf("hook_capabilities=%v", keep), func(t *testing.T) {
			out := filepath.Join(dir, fmt.Sprintf("hook-%v", keep))
			cmd := exec.Command(setpriv, "--reuid=65534", "--regid=65534", "--clear-groups",
				"--inh-caps=+net_admin", "--ambient-caps=+net_admin", "--",
				bin, "-test.run=^TestHookCapabilitiesChild$", "-test.count=1")
			cmd.Env = append(os.Environ(), "REDHAVEN_HOOKCAPS_CHILD="+out, "REDHAVEN_HOOKCAPS_KEEP="+strconv.FormatBool(keep))
			b, err := runBounded(cmd, 30*time.Second)
			if err != nil {
				t.Fatalf("child: %v\n%s", err, b)
			}
			agent := readFileT(t, out+".agent")
			hook := readFileT(t, out+".hook")
			if capMask(t, agent, "CapEff")&(1<<capNetAdmin) == 0 {
				t.Fatalf("the agent stand-in lacks CAP_NET_ADMIN, the test proves nothing:\n%s", agent)
			}
			gotEff, gotAmb := capMask(t, hook, "CapEff"), capMask(t, hook, "CapAmb")
			if keep && gotEff&(1<<capNetAdmin) == 0 {
				t.Errorf("hook_capabilities: true, but the hook has no CAP_NET_ADMIN (CapEff %x)", gotEff)
			}
			if !keep && (gotEff != 0 || gotAmb != 0) {
				t.Errorf("default: the hook kept capabilities: CapEff %x CapAmb %x", gotEff, gotAmb)
			}
		})
	}
}

// TestHookCapabilitiesChild is the agent stand-in of TestHookCapabilities.
func TestHookCapabilitiesChild(t *testing.T) {
	out := os.Getenv("REDHAVEN_HOOKCAPS_CHILD")
	if out == "" {
		t.Skip("run by TestHookCapabilities")
	}
	self, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(out+".agent", self, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig()
	cfg.HookCapabilities = os.Getenv("REDHAVEN_HOOKCAPS_KEEP") == "true"
	cfg.OnAcquire = "cat /proc/self/status > " + out + ".hook"
	h := newHookRunner(cfg, netip.MustParsePrefix(cfg.Address), slog.New(slog.NewTextHandler(os.Stderr, nil)))
	h.exec(eventAcquire)
	if _, err := os.Stat(out + ".hook"); err != nil {
		t.Fatalf("the hook did not run: %v", err)
	}
}

func capMask(t *testing.T, status, field string) uint64 {
	t.Helper()
	for _, line := range strings.Split(status, "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return n
		}
	}
	t.Fatalf("no %s in:\n%s", field, status)
	return 0
}

func readFileT(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// runBounded runs cmd and kills it when it takes longer than d.
func runBounded(cmd *exec.Cmd, d time.Duration) ([]byte, error) {
	var buf strings.Builder
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	timer := time.AfterFunc(d, func() { cmd.Process.Kill() })
	defer timer.Stop()
	err := cmd.Wait()
	return []byte(buf.String()), err
}
