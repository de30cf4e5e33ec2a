// idle-clients: open N client connections to one loopback Redis endpoint (a
// proxy or redis itself), send one command on each so the proxy has a live
// backend path, then hold them idle until SIGTERM/SIGINT or -hold elapses.
// Used by ../idle-rss.sh to measure memory per idle connection.
//
//	idle-clients -addr 127.0.0.1:7100 -n 10000 -hold 300s [-cmd set|ping] [-par 200] [-pause]
//
// Prints to stdout, one line each:
//
//	connected n=10000 ok=10000 failed=0 elapsed=0.80s  (-pause only: all connected, nothing
//	                                                    sent; waits for SIGUSR1, SIGTERM or -hold)
//	ready n=10000 ok=10000 failed=0 elapsed=1.23s      (all connected and answered)
//	final n=10000 ok=10000 failed=0 elapsed=0.45s      (the command again, on SIGTERM or -hold)
//
// plus "error ..." lines for the first few failures. The script reads the
// proxy's RSS between the lines. Only loopback addresses are accepted; every
// loop is bounded by -n and every wait by -timeout or -hold. Stdlib only.
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:7100", "target host:port (loopback only)")
	n := flag.Int("n", 10000, "connections to open")
	hold := flag.Duration("hold", 120*time.Second, "hold the connections at most this long")
	cmd := flag.String("cmd", "set", "command sent on each connection: set (SET idle:<i> <i>) or ping")
	par := flag.Int("par", 200, "connections opened in parallel")
	timeout := flag.Duration("timeout", 5*time.Second, "dial and reply timeout per connection")
	pause := flag.Bool("pause", false, "after connecting, print \"connected\" and wait for SIGUSR1 before sending")
	flag.Parse()

	host, _, err := net.SplitHostPort(*addr)
	if err != nil {
		fatalf("bad -addr %q: %v", *addr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		fatalf("refusing non-loopback address %q", *addr)
	}
	if *n < 1 || *par < 1 {
		fatalf("-n and -par must be at least 1")
	}
	if *cmd != "set" && *cmd != "ping" {
		fatalf("-cmd must be set or ping, got %q", *cmd)
	}

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	deadline := time.NewTimer(*hold)

	conns := make([]net.Conn, *n)
	var failed atomic.Int64
	var errMu sync.Mutex
	errShown := 0
	report := func(i int, err error) {
		failed.Add(1)
		errMu.Lock()
		defer errMu.Unlock()
		if errShown < 5 {
			errShown++
			fmt.Printf("error conn=%d %v\n", i, err)
		}
	}

	// Open every connection, -par at a time; with -pause, stop there until
	// SIGUSR1 (did the proxy dial its backend on accept, or lazily?).
	start := time.Now()
	run(*n, *par, func(i int) {
		c, err := net.DialTimeout("tcp", *addr, *timeout)
		if err != nil {
			report(i, err)
			return
		}
		conns[i] = c
	})
	stop := false
	if *pause {
		fmt.Printf("connected n=%d ok=%d failed=%d elapsed=%.2fs\n", *n, int64(*n)-failed.Load(), failed.Load(), time.Since(start).Seconds())
		select {
		case <-usr1:
		case <-sig:
			stop = true
		case <-deadline.C:
			stop = true
		}
	}

	// One command on each connection.
	if !stop {
		start = time.Now()
		run(*n, *par, func(i int) {
			c := conns[i]
			if c == nil {
				return
			}
			if err := roundTrip(c, *cmd, i, *timeout); err != nil {
				report(i, err)
				c.Close()
				conns[i] = nil
			}
		})
		fmt.Printf("ready n=%d ok=%d failed=%d elapsed=%.2fs\n", *n, int64(*n)-failed.Load(), failed.Load(), time.Since(start).Seconds())

		// Hold, idle, until told to stop.
		select {
		case <-sig:
		case <-deadline.C:
		}
	}

	// The command again on each connection still open: did the proxy keep them?
	if !stop {
		failed.Store(0)
		errShown = 0
		start = time.Now()
		run(*n, *par, func(i int) {
			c := conns[i]
			if c == nil {
				failed.Add(1)
				return
			}
			if err := roundTrip(c, *cmd, i, *timeout); err != nil {
				report(i, err)
			}
		})
		fmt.Printf("final n=%d ok=%d failed=%d elapsed=%.2fs\n", *n, int64(*n)-failed.Load(), failed.Load(), time.Since(start).Seconds())
	}
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
}

// run calls f(0..n-1) on par workers and returns when all are done.
func run(n, par int, f func(i int)) {
	next := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < par && w < n; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				f(i)
			}
		}()
	}
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
}

// roundTrip sends the command and reads one simple-string reply.
func roundTrip(c net.Conn, cmd string, i int, timeout time.Duration) error {
	var req []byte
	want := "+PONG"
	switch cmd {
	case "set":
		k, v := "idle:"+strconv.Itoa(i), strconv.Itoa(i)
		req = fmt.Appendf(nil, "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", len(k), k, len(v), v)
		want = "+OK"
	default:
		req = []byte("*1\r\n$4\r\nPING\r\n")
	}
	if err := c.SetDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	defer c.SetDeadline(time.Time{})
	if _, err := c.Write(req); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	buf := make([]byte, 0, 64)
	tmp := make([]byte, 64)
	for !bytes.Contains(buf, []byte("\r\n")) {
		m, err := c.Read(tmp)
		buf = append(buf, tmp[:m]...)
		if err != nil {
			return fmt.Errorf("read: %w (got %q)", err, buf)
		}
		if len(buf) > 512 {
			return errors.New("reply too long")
		}
	}
	line := string(buf[:bytes.Index(buf, []byte("\r\n"))])
	if line != want {
		return fmt.Errorf("reply %q, want %q", line, want)
	}
	return nil
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "idle-clients: "+format+"\n", args...)
	os.Exit(2)
}
