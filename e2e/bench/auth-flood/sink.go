package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// The sink stands in for the agent in the control floods (@sink), so that
// the flood process does the same work as against the agent and what it
// costs the probe's core shows without the agent doing anything. It
// answers as the agent answers a flood of wrong passwords once its global
// bucket is empty: each source address has a bucket of failBurst tokens,
// one more per failEvery; a connection that takes a token gets its 429
// after limitedDelay (the agent parses its request and refuses it), the
// others after gateDelay (refused at accept), while fewer than the agent's
// bounds wait; beyond, at once. Every 429 closes the connection.
const (
	sinkListen = "127.0.0.2:0" // not the agent's address
	// webui's values
	failBurst    = 5
	failEvery    = 10 * time.Second
	limitedDelay = time.Second
	maxDelayed   = 256
	gateDelay    = 5 * time.Second
	maxGateHeld  = 1024
)

var sinkAnswer = []byte("HTTP/1.1 429 Too Many Requests\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"Retry-After: 10\r\n" +
	"Connection: close\r\n" +
	"Content-Length: 61\r\n" +
	"\r\n" + "too many wrong passwords from this address: try again later\n")

// sinkStdin is the sink's stdin, open until this process exits.
var sinkStdin io.WriteCloser

// startSink starts the sink process (on the probe's CPU, inherited) and
// returns it with its address. It ends when its stdin closes, so it does
// not outlive this process even when the run fails.
func startSink() (*exec.Cmd, string, error) {
	c := exec.Command(os.Args[0], "-sink-child")
	c.Stderr = os.Stderr
	in, err := c.StdinPipe()
	if err != nil {
		return nil, "", err
	}
	out, err := c.StdoutPipe()
	if err != nil {
		return nil, "", err
	}
	if err := c.Start(); err != nil {
		return nil, "", err
	}
	sinkStdin = in // reachable, so that no finalizer closes it
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		_ = c.Process.Kill()
		_ = c.Wait()
		return nil, "", fmt.Errorf("sink address: %q %w", line, err)
	}
	return c, strings.TrimSpace(line), nil
}

// runSink serves until SIGTERM, its stdin closing, or an hour.
func runSink() int {
	ln, err := net.Listen("tcp", sinkListen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "auth-flood: sink:", err)
		return 1
	}
	fmt.Println(ln.Addr().String())
	done := make(chan struct{}, 3)
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); done <- struct{}{} }()
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM)
		<-sig
		done <- struct{}{}
	}()
	go func() { time.Sleep(time.Hour); done <- struct{}{} }()
	go func() {
		var delayed, held atomic.Int32
		type bucket struct {
			tokens float64
			at     time.Time
		}
		buckets := map[string]*bucket{}
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			now := time.Now()
			host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
			b := buckets[host]
			if b == nil && len(buckets) < 4096 {
				b = &bucket{tokens: failBurst, at: now}
				buckets[host] = b
			}
			wait, n, bound := gateDelay, &held, int32(maxGateHeld)
			if b != nil {
				b.tokens = min(failBurst, b.tokens+float64(now.Sub(b.at))/float64(failEvery))
				b.at = now
				if b.tokens >= 1 {
					b.tokens--
					wait, n, bound = limitedDelay, &delayed, maxDelayed
				}
			}
			if n.Add(1) <= bound {
				time.AfterFunc(wait, func() { sinkReply(c); n.Add(-1) })
				continue
			}
			n.Add(-1)
			sinkReply(c)
		}
	}()
	<-done
	_ = ln.Close()
	return 0
}

// sinkReply is webui's gateListener.answer: read what came (without
// waiting, so the close is a FIN and not a reset), the 429, close.
func sinkReply(c net.Conn) {
	if rc, err := c.(syscall.Conn).SyscallConn(); err == nil {
		var buf [4096]byte
		_ = rc.Read(func(fd uintptr) bool {
			for range 4 {
				if n, err := syscall.Read(int(fd), buf[:]); n <= 0 || err != nil {
					break
				}
			}
			return true
		})
	}
	_ = c.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = c.Write(sinkAnswer)
	_ = c.Close()
}
