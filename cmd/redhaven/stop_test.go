package main

import (
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// stuckPart stands for a stop step that never returns; its name must
// appear in the dump.
func stuckPart(started chan<- struct{}) {
	close(started)
	select {}
}

// The last resort of a stop: the log says so, every goroutine's stack
// follows (the stuck one included) and the process exits with exitStuck.
// The test runs itself as a child process that calls stuckExit.
func TestStuckExit(t *testing.T) {
	if os.Getenv("REDHAVEN_TEST_STUCK_EXIT") == "1" {
		started := make(chan struct{})
		go stuckPart(started)
		<-started
		stuckExit(slog.New(slog.NewTextHandler(os.Stderr, nil)), os.Stderr, stopDeadline)
		return // not reached
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestStuckExit$", "-test.count=1")
	cmd.Env = append(os.Environ(), "REDHAVEN_TEST_STUCK_EXIT=1")
	cmd.WaitDelay = time.Second
	timer := time.AfterFunc(30*time.Second, func() { _ = cmd.Process.Kill() })
	defer timer.Stop()
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != exitStuck {
		t.Fatalf("child: %v, want exit status %d\n%s", err, exitStuck, out)
	}
	for _, want := range []string{"stop did not finish", "after=25s", "goroutine stacks of the stuck stop", "redhaven.stuckPart(", "redhaven.stuckExit("} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}
