package webui

import (
	"bufio"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// gateFloodEnv makes TestGateFloodHelper the flood of
// TestGateBurstLeavesThePToOthers: "addr first-octet".
const gateFloodEnv = "REDHAVEN_TEST_GATE_FLOOD"

// TestGateFloodHelper, run as a subprocess, opens 8 connections from each
// of 100 loopback addresses 127.0.N.1-100 at once and sends a wrong
// password on each (what e2e/bench/auth-flood.sh's 1000x100 phase starts
// with), then reads every answer.
func TestGateFloodHelper(t *testing.T) {
	spec := os.Getenv(gateFloodEnv)
	if spec == "" {
		t.Skip("the flood of TestGateBurstLeavesThePToOthers (a subprocess)")
	}
	var addr string
	var third int
	if _, err := fmt.Sscan(spec, &addr, &third); err != nil {
		t.Fatal(err)
	}
	req := "GET /api/v1/stats HTTP/1.1\r\nHost: x\r\nAuthorization: Basic " +
		base64.StdEncoding.EncodeToString([]byte("alice:wrong")) + "\r\n\r\n"
	var wg sync.WaitGroup
	for a := 1; a <= 100; a++ {
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, byte(third), byte(a))}, Timeout: 10 * time.Second}
				c, err := d.Dial("tcp", addr)
				if err != nil {
					return
				}
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(20 * time.Second))
				if _, err := io.WriteString(c, req); err != nil {
					return
				}
				_, _ = io.Copy(io.Discard, c)
			}()
		}
	}
	wg.Wait()
}

// A burst of 800 new connections with wrong passwords from 100 addresses
// (a full bucket each, so the gate cannot refuse them yet) must not become
// hundreds of goroutines ready at once on an agent with one P: the
// runtime polls the network only when no goroutine is ready (or every 10
// ms), so the proxy's sockets would wait behind all of them. Paced, at
// most a few dozen connections are in net/http at a time (fewer than 200
// goroutines more than before the flood, sampled every millisecond);
// handed over all at once (s.gateRate huge, as before the pacing) the
// peak was about 800. A loopback echo in the same process shows what that
// means for other sockets (logged: its worst 100 ms window during the
// flood against its worst without; too noisy on a shared machine to be
// asserted).
func TestGateBurstLeavesThePToOthers(t *testing.T) {
	if testing.Short() {
		t.Skip("a subprocess")
	}
	s, _ := floodServer(t)
	s.gateDelay = 0                                         // refusals at accept answered at once: the flood ends sooner
	if r := os.Getenv("REDHAVEN_TEST_GATE_RATE"); r != "" { // to see the test fail without pacing
		s.gateRate, _ = strconv.Atoi(r)
	}
	prev := runtime.GOMAXPROCS(1)
	defer runtime.GOMAXPROCS(prev)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() {
		cancel()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			t.Error("Run did not return within 15s of cancel")
		}
	}()

	echo, stop := startEcho(t)
	defer stop()
	const window = 100 * time.Millisecond
	var quiet, flood []int
	for range 10 {
		quiet = append(quiet, echo(window))
	}
	base := runtime.NumGoroutine()
	fctx, cancelFlood := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancelFlood()
	cmd := exec.CommandContext(fctx, os.Args[0], "-test.run=^TestGateFloodHelper$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s %d", gateFloodEnv, s.Addr().String(), 10))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	var peak atomic.Int64
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for i := 0; i < 60_000; i++ {
			if n := int64(runtime.NumGoroutine()); n > peak.Load() {
				peak.Store(n)
			}
			select {
			case <-fctx.Done():
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()
	var err error
wait:
	for i := 0; i < 600; i++ {
		select {
		case err = <-exited:
			break wait
		default:
			flood = append(flood, echo(window))
		}
	}
	cancelFlood()
	<-sampled
	if err != nil {
		t.Fatalf("flood process: %v", err)
	}
	more := int(peak.Load()) - base
	t.Logf("goroutines: %d before the flood, at most %d more during it; echo round trips per %v: quiet min %d median %d, during the flood (%d windows) min %d median %d",
		base, more, window, slices.Min(quiet), median(quiet), len(flood), slices.Min(flood), median(flood))
	if more >= 200 {
		t.Errorf("a burst of 800 connections became %d more goroutines at once, want fewer than 200 (the gate paces them into net/http)", more)
	}
}

func median(v []int) int {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// startEcho starts a loopback echo with both ends in this process; echo(d)
// counts its round trips for d.
func startEcho(t *testing.T) (echo func(time.Duration) int, stop func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 64)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			if _, err := c.Write(buf[:n]); err != nil {
				return
			}
		}
	}()
	c, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	r := bufio.NewReader(c)
	echo = func(d time.Duration) int {
		end := time.Now().Add(d)
		n := 0
		for ; time.Now().Before(end) && n < 10_000_000; n++ {
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := c.Write([]byte("ping\n")); err != nil {
				t.Fatal(err)
			}
			if _, err := r.ReadString('\n'); err != nil {
				t.Fatal(err)
			}
		}
		return n
	}
	return echo, func() { c.Close(); ln.Close() }
}
