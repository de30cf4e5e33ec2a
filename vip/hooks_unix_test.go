//go:build unix

package vip

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redhaven/redhaven/e2e/testutil"
)

func TestHookTimeoutKillsTheHook(t *testing.T) {
	cfg := testConfig()
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "pid")
	// A grandchild in the background: the timeout must kill the whole
	// process group, not only the shell.
	cfg.OnAcquire = fmt.Sprintf("sleep 30 & echo $! > %s; wait; touch %s", pidFile, filepath.Join(dir, "finished"))
	cfg.HookTimeout = 300 * time.Millisecond
	r := startFake(t, cfg, &fakeSys{})
	r.SetDesired(true)
	testutil.Eventually(t, wait, "hook timed out", func() bool { return strings.Contains(r.logs.String(), "vip hook timed out") })
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	var pid int
	if _, err := fmt.Sscan(string(b), &pid); err != nil || pid <= 0 {
		t.Fatalf("pid file %q: %v", b, err)
	}
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	testutil.Eventually(t, wait, "the hook's background child killed", func() bool {
		// Gone, or a zombie waiting for init: either way not running.
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		return err != nil || strings.Contains(string(st), ") Z ")
	})
	start := time.Now()
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Run took %v to return after cancel", d)
	}
	if _, err := os.Stat(filepath.Join(dir, "finished")); err == nil {
		t.Error("the hook ran to the end despite hook_timeout")
	}
}
