// Package loadgen is a pipelined Redis load that checks every reply: each
// connection INCRs its own key, P commands per batch (split in two writes
// at a random place, so the server sees partial commands), and expects the
// replies 1, 2, 3, ... in order. It counts dropped connections (EOF, reset)
// and the longest pause between two replies on a connection. The hand-over
// tests and e2e/handoverload use it.
package loadgen

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Options of a run.
type Options struct {
	Addr      string
	Conns     int    // connections (default 8)
	Pipeline  int    // commands per batch (default 16)
	KeyPrefix string // default "hoload:"
	// Setup is sent once on each connection before the load (each command
	// answered before the next), e.g. SELECT 3.
	Setup [][]string
}

// Result of a run.
type Result struct {
	Replies    int64         // replies checked
	Drops      int64         // connections that broke (EOF/reset/timeout)
	Misordered int64         // replies that were not the next number
	MaxPause   time.Duration // longest time between two replies on a connection
	Errors     []string      // the first few errors
}

func (r Result) String() string {
	return fmt.Sprintf("%d replies, %d dropped, %d out of order, longest pause %s", r.Replies, r.Drops, r.Misordered, r.MaxPause.Round(time.Millisecond))
}

// Run runs the load until ctx ends. A broken connection is counted and
// redialed.
func Run(ctx context.Context, o Options) Result {
	if o.Conns <= 0 {
		o.Conns = 8
	}
	if o.Pipeline <= 0 {
		o.Pipeline = 16
	}
	if o.KeyPrefix == "" {
		o.KeyPrefix = "hoload:"
	}
	var res Result
	var replies, drops, misordered, maxPause atomic.Int64
	var mu sync.Mutex
	note := func(err string) {
		mu.Lock()
		if len(res.Errors) < 10 {
			res.Errors = append(res.Errors, err)
		}
		mu.Unlock()
	}
	var wg sync.WaitGroup
	for i := range o.Conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := fmt.Sprintf("%s%d:%d", o.KeyPrefix, time.Now().UnixNano(), i)
			var next int64 = 1
			for ctx.Err() == nil {
				err := runConn(ctx, o, key, &next, &replies, &misordered, &maxPause)
				if ctx.Err() != nil {
					return
				}
				drops.Add(1)
				note(fmt.Sprintf("conn %d: %v", i, err))
				time.Sleep(50 * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	res.Replies, res.Drops, res.Misordered = replies.Load(), drops.Load(), misordered.Load()
	res.MaxPause = time.Duration(maxPause.Load())
	return res
}

func runConn(ctx context.Context, o Options, key string, next *int64, replies, misordered, maxPause *atomic.Int64) error {
	c, err := net.DialTimeout("tcp", o.Addr, 2*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	rd := bufio.NewReader(c)
	for _, cmd := range o.Setup {
		if _, err := c.Write(command(cmd...)); err != nil {
			return err
		}
		line, err := rd.ReadString('\n')
		if err != nil {
			return err
		}
		if line[0] == '-' {
			return fmt.Errorf("%v: %s", cmd, line)
		}
	}
	if *next > 1 {
		// after a redial: go on from what the server holds
		if _, err := c.Write(command("GET", key)); err != nil {
			return err
		}
		if _, err := rd.ReadString('\n'); err != nil {
			return err
		}
		line, err := rd.ReadString('\n')
		if err != nil {
			return err
		}
		n, _ := strconv.ParseInt(line[:len(line)-2], 10, 64)
		*next = n + 1
	}
	batch := make([]byte, 0, o.Pipeline*64)
	one := command("INCR", key)
	for range o.Pipeline {
		batch = append(batch, one...)
	}
	last := time.Now()
	for ctx.Err() == nil {
		cut := 1 + rand.IntN(len(batch)-1)
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		if _, err := c.Write(batch[:cut]); err != nil {
			return err
		}
		if _, err := c.Write(batch[cut:]); err != nil {
			return err
		}
		for range o.Pipeline {
			line, err := rd.ReadString('\n')
			if err != nil {
				return err
			}
			now := time.Now()
			if d := int64(now.Sub(last)); d > maxPause.Load() {
				for {
					m := maxPause.Load()
					if d <= m || maxPause.CompareAndSwap(m, d) {
						break
					}
				}
			}
			last = now
			n, perr := strconv.ParseInt(line[1:len(line)-2], 10, 64)
			if line[0] != ':' || perr != nil {
				return fmt.Errorf("unexpected reply %q", line)
			}
			if n != *next {
				misordered.Add(1)
			}
			*next = n + 1
			replies.Add(1)
		}
	}
	return nil
}

func command(args ...string) []byte {
	b := []byte("*" + strconv.Itoa(len(args)) + "\r\n")
	for _, a := range args {
		b = append(b, "$"+strconv.Itoa(len(a))+"\r\n"+a+"\r\n"...)
	}
	return b
}
