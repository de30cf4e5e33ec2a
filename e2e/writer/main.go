// Command writer is the client of the Docker end-to-end failover tests. It
// runs inside the client container (a static binary, CGO_ENABLED=0) and
// only talks to the addresses it is given, which the tests take from the
// test's own Docker network. Every loop is bounded by -max.
//
//	writer write  -addr VIP:6380 -prefix s1p -out /tmp/s1p.csv [-reconnect-every 100ms]
//	writer verify -addr MASTER:6379 -prefix s1p -in /tmp/s1p.csv -out /tmp/s1p.present
//	writer watch  -addr OLD:6379 -prefixes s2p,s2r -out /tmp/old.keys
//	writer chaos  -addrs vip=VIP:6380,n1=N1:6380,... [-redis n1=N1:6379,...] -out /tmp/chaos.jsonl
//	writer final  -addr MASTER:6379 -out /tmp/final.json
//	writer hold   -addr VIP:6380 -conns 4 -out /tmp/hold.txt   (hold.go)
//	writer supervise -pidfile F -log F -- redhaven agent ...   (supervise.go)
//
// write sends SET <prefix>:N N every -interval and records every
// command's outcome in a write log (e2e/probe: seq, send and done time in
// Unix ns, ok, error class and text, connection number); it writes the CSV to -out.tmp
// and renames it to -out when it stops (SIGTERM or -max), and keeps a
// one-line progress file (-out.progress) up to date.
//
// verify reads such a CSV and lists, one per line, the sequence numbers
// whose key holds its value on -addr (MGET in chunks).
//
// watch polls a Redis node and, while it reports role master (before and
// after the scan), records every key of the given prefixes: the writes
// that landed on a node while it was a master.
//
// chaos runs the fault-injection workload (registers and lists, see
// chaos.go) and final reads its lists from the final master.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/redhaven/redhaven/e2e/probe"
	"github.com/redis/go-redis/v9"
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
	case "chaos":
		err = cmdChaos(os.Args[2:])
	case "final":
		err = cmdFinal(os.Args[2:])
	case "hold":
		err = cmdHold(os.Args[2:])
	case "supervise":
		err = cmdSupervise(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "writer %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: writer write|verify|watch|chaos|final|hold|supervise [flags]  (-h for flags)")
	os.Exit(2)
}

func newClient(addr string, dialTimeout, timeout time.Duration) *redis.Client {
	return probe.NewClient(addr, dialTimeout, timeout, nil)
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
	fmt.Fprintln(w, probe.Header)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *maxRun)
	defer cancel()
	var seq, acks, errs, lastAck int64
	progress := func() {
		_ = os.WriteFile(*out+".progress", fmt.Appendf(nil, "%d %d %d %d\n", seq, acks, errs, lastAck), 0o644)
	}
	lastProgress := time.Time{}
	probe.Writer{
		Addr: *addr, Prefix: *prefix, Interval: *interval,
		DialTimeout: *dialTimeout, Timeout: *timeout, ReconnectEvery: *reconnect,
	}.Run(ctx, func(r probe.Record) bool {
		r.Format(w)
		seq = r.Seq
		if r.OK {
			acks++
			lastAck = r.Done
		} else {
			errs++
		}
		if time.Since(lastProgress) >= 100*time.Millisecond {
			lastProgress = time.Now()
			progress()
		}
		return false
	})
	progress()
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
	outPath := fs.String("out", "", "present sequence numbers, one a line")
	_ = fs.Parse(args)
	if *addr == "" || *in == "" || *outPath == "" {
		return errors.New("-addr, -in and -out are required")
	}
	recs, err := probe.ReadLog(*in)
	if err != nil {
		return err
	}
	c := newClient(*addr, 2*time.Second, 10*time.Second)
	defer c.Close()
	present, err := probe.Present(context.Background(), c, *prefix, probe.Seqs(recs))
	if err != nil {
		return fmt.Errorf("%s: %w", *addr, err)
	}
	var out strings.Builder
	for _, seq := range probe.Seqs(recs) {
		if present[seq] {
			fmt.Fprintln(&out, seq)
		}
	}
	return os.WriteFile(*outPath, []byte(out.String()), 0o644)
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
