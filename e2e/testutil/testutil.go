// Package testutil holds the helpers every package's tests share: waiting for
// a condition, free loopback ports, and skipping (or, under REDHAVEN_REQUIRE,
// failing) when a needed piece of the machine is missing.
package testutil

import (
	"context"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// Require skips the test when a needed piece ("redis", "netns", "docker",
// "chromium") is missing, or fails it when REDHAVEN_REQUIRE names that piece
// (CI sets it so that nothing silently skips).
func Require(t testing.TB, piece string, missing string) {
	t.Helper()
	if missing == "" {
		return
	}
	for _, p := range strings.Split(os.Getenv("REDHAVEN_REQUIRE"), ",") {
		if strings.TrimSpace(p) == piece {
			t.Fatalf("%s required (REDHAVEN_REQUIRE=%s) but missing: %s", piece, os.Getenv("REDHAVEN_REQUIRE"), missing)
		}
	}
	t.Skipf("skipping: %s missing: %s", piece, missing)
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Eventually polls cond every 10ms until it is true or timeout passes.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	EventuallyEvery(t, timeout, 10*time.Millisecond, what, cond)
}

// EventuallyEvery is Eventually with its own polling interval, for
// conditions that are expensive to check (a command in a namespace, a scrape).
func EventuallyEvery(t testing.TB, timeout, interval time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for: %s", timeout, what)
		}
		time.Sleep(interval)
	}
}

// RequireDocker skips (or fails under REDHAVEN_REQUIRE=docker) unless a
// Docker daemon answers.
func RequireDocker(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("docker"); err != nil {
		Require(t, "docker", "docker not on PATH")
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "docker", "version", "--format", "{{.Server.Version}}").CombinedOutput()
	if err != nil {
		Require(t, "docker", "no Docker daemon: "+err.Error()+": "+strings.TrimSpace(string(out)))
	}
}
