// Command writer is the client of the Docker end-to-end failover tests. It
// runs inside the client container (a static binary, CGO_ENABLED=0) and
// only talks to the addresses it is given, which the tests take from the
// test's own Docker network. Every loop is bounded by -max.
//
//	writer write  -addr VIP:6380 -prefix s1p -out /tmp/s1p.csv [-reconnect-every 100ms]
//	writer verify -addr MASTER:6379 -prefix s1p -in /tmp/s1p.csv -out /tmp/s1p.present
//	writer watch  -addr OLD:6379 -prefixes s2p,s2r -out /tmp/old.keys
//
// write sends SET <prefix>:N N every -interval and records every
// command's outcome (seq, send and done time in Unix ns, ok, error class
// and text, connection number) in a CSV; it writes the CSV to -out.tmp
// and renames it to -out when it stops (SIGTERM or -max), and keeps a
// one-line progress file (-out.progress) up to date.
//
// verify reads such a CSV and lists, one per line, the sequence numbers
// whose key holds its value on -addr (MGET in chunks).
//
// watch polls a Redis node and, while it reports role master (before and
// after the scan), records every key of the given prefixes: the writes
// that landed on a node while it was a master.
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
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "write":
		err = cmdWrite(os.Args[2:])
	case "verify":
		err = cmdVerify(os.Args[2:])
	case "watch":
		err = cmdWatch(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "writer %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: writer write|verify|watch [flags]  (-h for flags)")
	os.Exit(2)
}

// newClient: one connection, no hidden retries, RESP2, no CLIENT SETINFO
// or maintenance notifications: every command the test counts is one
// command on the wire.
func newClient(addr string, dialTimeout, timeout time.Duration) *redis.Client {
	return redis.NewClient(&redis.Options{
		Addr:                     addr,
		Protocol:                 2,
		DisableIdentity:          true,
		MaxRetries:               -1,
		DialTimeout:              dialTimeout,
		DialerRetries:            1,
		ReadTimeout:              timeout,
		WriteTimeout:             timeout,
		PoolSize:                 1,
		PoolTimeout:              timeout,
		ConnMaxIdleTime:          -1,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	})
}

// errClass names the kind of error: the Redis error code (ERR, READONLY,
// ...) or the network failure.
func errClass(err error) string {
	var rerr redis.Error
	if errors.As(err, &rerr) {
		if w := strings.Fields(rerr.Error()); len(w) > 0 {
			return w[0]
		}
		return "redis"
	}
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "eof"
	case errors.Is(err, syscall.ECONNRESET):
		return "reset"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, syscall.EPIPE):
		return "epipe"
	case errors.Is(err, syscall.EHOSTUNREACH):
		return "unreachable"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout"
	}
	return "other"
}

func clean(s string) string {
	return strings.NewReplacer(",", ";", "\n", " ", "\r", " ").Replace(s)
}

func cmdWrite(args []string) error {
	fs := flag.NewFlagSet("write", flag.ExitOnError)
	addr := fs.String("addr", "", "proxy address host:port (the VIP)")
	prefix := fs.String("prefix", "k", "key prefix: SET <prefix>:N N")
	interval := fs.Duration("interval", 5*time.Millisecond, "one SET per interval")
	dialTimeout := fs.Duration("dial-timeout", time.Second, "dial timeout")
	timeout := fs.Duration("timeout", 7*time.Second, "read/write timeout (above the proxy's hold_timeout)")
	reconnect := fs.Duration("reconnect-every", 0, "if > 0, a new connection when the current one is this old")
	out := fs.String("out", "", "CSV written here when the writer stops")
	maxRun := fs.Duration("max", 10*time.Minute, "hard cap on run time")
	_ = fs.Parse(args)
	if *addr == "" || *out == "" {
		return errors.New("-addr and -out are required")
	}
	f, err := os.Create(*out + ".tmp")
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	fmt.Fprintln(w, "seq,send_ns,done_ns,ok,err_class,err_msg,conn")

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	ctx := context.Background()
	deadline := time.Now().Add(*maxRun)
	connNo := 1
	client := newClient(*addr, *dialTimeout, *timeout)
	born := time.Now()
	renew := func() {
		_ = client.Close()
		client = newClient(*addr, *dialTimeout, *timeout)
		born = time.Now()
		connNo++
	}
	tick := time.NewTicker(*interval)
	defer tick.Stop()
	var seq, acks, errs, lastAck int64
	lastProgress := time.Time{}
loop:
	for time.Now().Before(deadline) {
		select {
		case <-sig:
			break loop
		case <-tick.C:
		}
		if *reconnect > 0 && time.Since(born) >= *reconnect {
			renew()
		}
		seq++
		s := strconv.FormatInt(seq, 10)
		send := time.Now().UnixNano()
		err := client.Set(ctx, *prefix+":"+s, s, 0).Err()
		done := time.Now().UnixNano()
		if err == nil {
			acks++
			lastAck = done
			fmt.Fprintf(w, "%d,%d,%d,1,,,%d\n", seq, send, done, connNo)
		} else {
			errs++
			fmt.Fprintf(w, "%d,%d,%d,0,%s,%s,%d\n", seq, send, done, errClass(err), clean(err.Error()), connNo)
			var rerr redis.Error
			if !errors.As(err, &rerr) {
				renew() // the connection is gone: a fresh client, no go-redis dial back-off
			}
		}
		if time.Since(lastProgress) >= 100*time.Millisecond {
			lastProgress = time.Now()
			_ = os.WriteFile(*out+".progress", fmt.Appendf(nil, "%d %d %d %d\n", seq, acks, errs, lastAck), 0o644)
		}
	}
	_ = client.Close()
	_ = os.WriteFile(*out+".progress", fmt.Appendf(nil, "%d %d %d %d\n", seq, acks, errs, lastAck), 0o644)
	if err := w.Flush(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(*out+".tmp", *out)
}

func cmdVerify(args []string) error {
	fs := flag.NewFlagSet("verify", flag.ExitOnError)
	addr := fs.String("addr", "", "Redis node to read (the final master), host:port")
	prefix := fs.String("prefix", "k", "key prefix")
	in := fs.String("in", "", "CSV from write")
	out := fs.String("out", "", "present sequence numbers, one a line")
	_ = fs.Parse(args)
	if *addr == "" || *in == "" || *out == "" {
		return errors.New("-addr, -in and -out are required")
	}
	b, err := os.ReadFile(*in)
	if err != nil {
		return err
	}
	var seqs []string
	for i, line := range strings.Split(string(b), "\n") {
		if i == 0 || line == "" {
			continue
		}
		seq, _, _ := strings.Cut(line, ",")
		seqs = append(seqs, seq)
	}
	c := newClient(*addr, 2*time.Second, 10*time.Second)
	defer c.Close()
	ctx := context.Background()
	var present strings.Builder
	for i := 0; i < len(seqs); i += 500 {
		chunk := seqs[i:min(i+500, len(seqs))]
		keys := make([]string, len(chunk))
		for j, s := range chunk {
			keys[j] = *prefix + ":" + s
		}
		vals, err := c.MGet(ctx, keys...).Result()
		if err != nil {
			return fmt.Errorf("MGET on %s: %w", *addr, err)
		}
		for j, v := range vals {
			if s, ok := v.(string); ok && s == chunk[j] {
				present.WriteString(s + "\n")
			}
		}
	}
	return os.WriteFile(*out, []byte(present.String()), 0o644)
}

func cmdWatch(args []string) error {
	fs := flag.NewFlagSet("watch", flag.ExitOnError)
	addr := fs.String("addr", "", "Redis node to watch, host:port")
	prefixes := fs.String("prefixes", "k", "comma-separated key prefixes")
	interval := fs.Duration("interval", 50*time.Millisecond, "poll interval")
	out := fs.String("out", "", "written when the watch stops: a summary line, then the keys")
	maxRun := fs.Duration("max", 2*time.Minute, "hard cap on run time")
	_ = fs.Parse(args)
	if *addr == "" || *out == "" {
		return errors.New("-addr and -out are required")
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	ctx := context.Background()
	c := newClient(*addr, 200*time.Millisecond, 500*time.Millisecond)
	keys := map[string]bool{}
	var polls, up, masterPolls int
	role := func() string {
		r, err := c.Do(ctx, "ROLE").Slice()
		if err != nil || len(r) == 0 {
			return ""
		}
		s, _ := r[0].(string)
		return s
	}
	deadline := time.Now().Add(*maxRun)
	tick := time.NewTicker(*interval)
	defer tick.Stop()
loop:
	for time.Now().Before(deadline) {
		select {
		case <-sig:
			break loop
		case <-tick.C:
		}
		polls++
		r := role()
		if r == "" {
			_ = c.Close()
			c = newClient(*addr, 200*time.Millisecond, 500*time.Millisecond)
			continue
		}
		up++
		if r != "master" {
			continue
		}
		masterPolls++
		var seen []string
		for _, p := range strings.Split(*prefixes, ",") {
			var cursor uint64
			for i := 0; i < 1000; i++ { // bounded SCAN
				ks, next, err := c.Scan(ctx, cursor, p+":*", 1000).Result()
				if err != nil {
					break
				}
				seen = append(seen, ks...)
				if cursor = next; cursor == 0 {
					break
				}
			}
		}
		if role() == "master" { // still a master after the scan: the keys were written to a master
			for _, k := range seen {
				keys[k] = true
			}
		}
	}
	_ = c.Close()
	list := make([]string, 0, len(keys))
	for k := range keys {
		list = append(list, k)
	}
	sort.Strings(list)
	body := fmt.Sprintf("polls=%d up=%d master=%d keys=%d\n%s", polls, up, masterPolls, len(list), strings.Join(list, "\n"))
	if err := os.WriteFile(*out+".tmp", []byte(body+"\n"), 0o644); err != nil {
		return err
	}
	return os.Rename(*out+".tmp", *out)
}
