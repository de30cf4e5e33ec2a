package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"
)

// hold keeps -conns client connections open to -addr and sends INCR on
// each every -interval, one command at a time, on a raw socket (no client
// library that would quietly redial): a connection the server closes or
// resets (EOF, RST, broken pipe) is counted as dropped, and then dialed
// again. When it stops (SIGTERM or -max) it writes one line to -out:
//
//	drops=N errors=N timeouts=N replies=N dials=N max_pause_ms=N
//
// errors are error replies, timeouts (no reply within -timeout: the
// connection is closed and dialed again; also counted apart) and failed
// dials; max_pause_ms is the
// longest time between two replies on one connection.
//
// While it runs, -out.progress holds the replies so far on each
// connection, one number per connection on one line, rewritten every
// 100 ms (the test waits on it until every connection answers).
func cmdHold(args []string) error {
	fs := flag.NewFlagSet("hold", flag.ExitOnError)
	addr := fs.String("addr", "", "proxy address host:port (the VIP)")
	conns := fs.Int("conns", 4, "connections")
	interval := fs.Duration("interval", 10*time.Millisecond, "one INCR per connection per interval")
	timeout := fs.Duration("timeout", 10*time.Second, "reply timeout")
	out := fs.String("out", "", "the result line is written here when it stops")
	maxRun := fs.Duration("max", 10*time.Minute, "hard cap on run time")
	_ = fs.Parse(args)
	if *addr == "" || *out == "" {
		return errors.New("-addr and -out are required")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *maxRun)
	defer cancel()

	var mu sync.Mutex
	var drops, errs, timeouts, replies, dials int
	var maxPause time.Duration
	var events []string
	perConn := make([]int, *conns) // replies on each connection
	progress := func() {
		mu.Lock()
		line := fmt.Sprintln(strings.Trim(fmt.Sprint(perConn), "[]"))
		mu.Unlock()
		if err := os.WriteFile(*out+".progress.tmp", []byte(line), 0o644); err == nil {
			_ = os.Rename(*out+".progress.tmp", *out+".progress")
		}
	}
	progress()
	progressDone := make(chan struct{})
	go func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				close(progressDone)
				return
			case <-tick.C:
				progress()
			}
		}
	}()
	note := func(i int, what string, err error) {
		if len(events) < 50 {
			events = append(events, fmt.Sprintf("%d conn%d %s: %v", time.Now().UnixNano(), i, what, err))
		}
	}
	var wg sync.WaitGroup
	for i := 0; i < *conns; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := fmt.Sprintf("e2e:hold:%d", i)
			cmd := fmt.Sprintf("*2\r\n$4\r\nINCR\r\n$%d\r\n%s\r\n", len(key), key)
			var c net.Conn
			var rd *bufio.Reader
			var last time.Time // last reply on this connection
			tick := time.NewTicker(*interval)
			defer tick.Stop()
			for ctx.Err() == nil {
				select {
				case <-ctx.Done():
				case <-tick.C:
				}
				if ctx.Err() != nil {
					break
				}
				if c == nil {
					var err error
					c, err = net.DialTimeout("tcp", *addr, time.Second)
					mu.Lock()
					dials++
					if err != nil {
						errs++
						note(i, "dial", err)
					}
					mu.Unlock()
					if err != nil {
						c = nil
						continue
					}
					rd = bufio.NewReader(c)
					last = time.Time{}
				}
				_ = c.SetDeadline(time.Now().Add(*timeout))
				_, err := io.WriteString(c, cmd)
				var line string
				if err == nil {
					line, err = rd.ReadString('\n')
				}
				mu.Lock()
				switch {
				case err == nil && strings.HasPrefix(line, ":"):
					replies++
					perConn[i]++
					now := time.Now()
					if !last.IsZero() && now.Sub(last) > maxPause {
						maxPause = now.Sub(last)
					}
					last = now
				case err == nil:
					errs++
					note(i, "reply", errors.New(strings.TrimSpace(line)))
				case dropped(err):
					drops++
					note(i, "dropped", err)
				default:
					errs++
					if errors.Is(err, os.ErrDeadlineExceeded) {
						timeouts++ // no reply within -timeout: the connection is given up
					}
					note(i, "error", err)
				}
				mu.Unlock()
				if err != nil {
					_ = c.Close()
					c = nil
				}
			}
			if c != nil {
				_ = c.Close()
			}
		}()
	}
	wg.Wait()
	<-progressDone
	progress()
	mu.Lock()
	defer mu.Unlock()
	res := fmt.Sprintf("drops=%d errors=%d timeouts=%d replies=%d dials=%d max_pause_ms=%d\n", drops, errs, timeouts, replies, dials, maxPause.Milliseconds())
	res += strings.Join(events, "\n")
	if err := os.WriteFile(*out+".tmp", []byte(res), 0o644); err != nil {
		return err
	}
	return os.Rename(*out+".tmp", *out)
}

// dropped: the server side closed or reset the connection.
func dropped(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, syscall.ECONNABORTED)
}
