// Package testutil holds the helpers every package's tests share: waiting for
// a condition, free loopback ports, and skipping (or, under REDHAVEN_REQUIRE,
// failing) when a needed piece of the machine is missing.
package testutil

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
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

// FreePort returns a loopback port that was free for both TCP and UDP a
// moment ago (memberlist needs both). It picks at random from 20000-31999,
// below Linux's ephemeral range, so that outgoing connections of running
// agents and Redis cannot take it between this call and the bind (seen in
// CI: "bind: address already in use" for a port the kernel had given out
// as 127.0.0.1:0 a moment before), and never returns the same port twice in
// one test binary.
func FreePort(t testing.TB) int {
	t.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 500 {
		port := 20000 + rand.IntN(12000)
		if portsGiven[port] {
			continue
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		_ = l.Close()
		if err != nil {
			continue
		}
		_ = u.Close()
		portsGiven[port] = true
		return port
	}
	t.Fatal("free port: no port in 20000-31999 free for both tcp and udp")
	return 0
}

var (
	portsMu    sync.Mutex
	portsGiven = map[int]bool{}
)

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
