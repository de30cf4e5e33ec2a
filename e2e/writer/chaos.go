package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redhaven/redhaven/e2e/chaos"
	"github.com/redhaven/redhaven/e2e/probe"
	"github.com/redis/go-redis/v9"
)

// cmdChaos runs the fault-injection workload: -clients clients, spread
// over the named addresses (the VIP and each node's proxy), half on one
// persistent connection and half on a new connection every
// -reconnect-every, each doing SET/GET on registers and RPUSH/LRANGE on
// lists of -keys keys, and records every operation (chaos.Op, JSON lines)
// to -out when it stops (SIGTERM or -max). Values are unique per client.
func cmdChaos(args []string) error {
	fs := flag.NewFlagSet("chaos", flag.ExitOnError)
	addrs := fs.String("addrs", "", "name=host:port,... (e.g. vip=10.0.0.250:6380,n1=10.0.0.11:6380)")
	clients := fs.Int("clients", 8, "workload clients")
	keys := fs.Int("keys", 4, "keys per workload (registers and lists)")
	prefix := fs.String("prefix", "chaos", "key prefix")
	interval := fs.Duration("interval", 10*time.Millisecond, "one operation per client per interval")
	timeout := fs.Duration("timeout", 7*time.Second, "read/write timeout (above the proxy's hold_timeout)")
	reconnect := fs.Duration("reconnect-every", 200*time.Millisecond, "reconnecting clients: a new connection this often")
	seed := fs.Uint64("seed", 1, "random seed of the operation mix")
	out := fs.String("out", "", "history (JSON lines), written when the workload stops")
	maxRun := fs.Duration("max", 40*time.Minute, "hard cap on run time")
	redisAddrs := fs.String("redis", "", "name=host:port,... of the nodes' Redis: their INFO replication and their Sentinel's (port -sentinel-port) view are sampled to -out.repl")
	sentinelPort := fs.String("sentinel-port", "26379", "Sentinel port on the -redis hosts")
	masterName := fs.String("master-name", "mymaster", "Sentinel's name of the master")
	sampleEvery := fs.Duration("sample-every", 150*time.Millisecond, "replication sampling interval")
	_ = fs.Parse(args)
	if *addrs == "" || *out == "" {
		return errors.New("-addrs and -out are required")
	}
	type target struct{ name, addr string }
	var targets []target
	for _, kv := range strings.Split(*addrs, ",") {
		name, addr, ok := strings.Cut(kv, "=")
		if !ok {
			return fmt.Errorf("-addrs: %q is not name=host:port", kv)
		}
		targets = append(targets, target{name, addr})
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *maxRun)
	defer cancel()

	var samplers sync.WaitGroup
	var samples []chaos.ReplSample
	var samplesMu sync.Mutex
	if *redisAddrs != "" {
		nodes := map[string]string{} // IP -> node name
		var redisTargets []target
		for _, kv := range strings.Split(*redisAddrs, ",") {
			name, addr, ok := strings.Cut(kv, "=")
			host, _, err := net.SplitHostPort(addr)
			if !ok || err != nil {
				return fmt.Errorf("-redis: %q is not name=host:port", kv)
			}
			nodes[host] = name
			redisTargets = append(redisTargets, target{name, addr})
		}
		for _, t := range redisTargets {
			samplers.Add(1)
			go func() {
				defer samplers.Done()
				host, _, _ := net.SplitHostPort(t.addr)
				mine := sampleReplication(ctx, t.name, t.addr, net.JoinHostPort(host, *sentinelPort), *masterName, nodes, *sampleEvery)
				samplesMu.Lock()
				samples = append(samples, mine...)
				samplesMu.Unlock()
			}()
		}
	}
	var done, failed atomic.Int64
	histories := make([][]chaos.Op, *clients)
	var wg sync.WaitGroup
	for i := range *clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := targets[i%len(targets)]
			renewEvery := time.Duration(0)
			if i%2 == 1 {
				renewEvery = *reconnect
			}
			w := chaosClient{
				id: i, via: t.name, addr: t.addr, prefix: *prefix, keys: *keys, timeout: *timeout,
				renewEvery: renewEvery, rng: rand.New(rand.NewPCG(*seed, uint64(i))),
			}
			histories[i] = w.run(ctx, *interval, &done, &failed)
		}()
	}
	progress := time.NewTicker(200 * time.Millisecond)
	defer progress.Stop()
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	for running := true; running; {
		select {
		case <-finished:
			running = false
		case <-progress.C:
		}
		_ = os.WriteFile(*out+".progress", fmt.Appendf(nil, "%d %d\n", done.Load(), failed.Load()), 0o644)
	}
	samplers.Wait()
	if *redisAddrs != "" {
		// before the history: the test waits for the history file
		if err := writeReplSamples(*out+".repl", samples); err != nil {
			return err
		}
	}
	var all []chaos.Op
	for _, h := range histories {
		all = append(all, h...)
	}
	_ = os.Remove(*out + ".tmp")
	if err := chaos.WriteOps(*out+".tmp", all); err != nil {
		return err
	}
	return os.Rename(*out+".tmp", *out)
}

type chaosClient struct {
	id         int
	via, addr  string
	prefix     string
	keys       int
	timeout    time.Duration
	renewEvery time.Duration
	rng        *rand.Rand
}

func (w *chaosClient) run(ctx context.Context, interval time.Duration, done, failed *atomic.Int64) []chaos.Op {
	var ops []chaos.Op
	conn := 0
	var c *redis.Client
	var born time.Time
	renew := func() {
		if c != nil {
			_ = c.Close()
		}
		c = probe.NewClient(w.addr, time.Second, w.timeout, nil)
		born = time.Now()
		conn++
	}
	renew()
	defer func() { _ = c.Close() }()
	var reads chaos.ReadRecorder // LRANGEs are recorded as what is new since this client's last read
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for seq := 1; ; seq++ {
		select {
		case <-ctx.Done():
			return ops
		case <-tick.C:
		}
		if w.renewEvery > 0 && time.Since(born) >= w.renewEvery {
			renew()
		}
		k := strconv.Itoa(w.rng.IntN(w.keys))
		value := fmt.Sprintf("c%d-%d", w.id, seq)
		op := chaos.Op{Client: w.id, Conn: conn, Via: w.via}
		wctx := context.WithoutCancel(ctx) // a stop never cuts an operation short
		var err error
		op.Invoke = time.Now().UnixNano()
		switch w.rng.IntN(4) {
		case 0:
			op.Kind, op.Key, op.Value = chaos.KindSet, "r:"+k, value
			err = c.Set(wctx, w.prefix+":"+op.Key, value, 0).Err()
		case 1:
			op.Kind, op.Key = chaos.KindGet, "r:"+k
			op.Value, err = c.Get(wctx, w.prefix+":"+op.Key).Result()
			if errors.Is(err, redis.Nil) {
				op.Value, err = "", nil
			}
		case 2:
			op.Kind, op.Key, op.Value = chaos.KindRPush, "l:"+k, value
			err = c.RPush(wctx, w.prefix+":"+op.Key, value).Err()
		default:
			op.Kind, op.Key = chaos.KindLRange, "l:"+k
			op.List, err = c.LRange(wctx, w.prefix+":"+op.Key, 0, -1).Result()
		}
		op.Complete = time.Now().UnixNano()
		connErr := err != nil && !probe.IsRedisError(err)
		if err != nil {
			op.Err = err.Error()
			failed.Add(1)
		}
		op.Outcome = chaos.Classify(strings.TrimSpace(op.Err), connErr)
		if op.Outcome != chaos.OK && !op.IsWrite() {
			op.Value, op.List = "", nil
		}
		if op.Kind == chaos.KindLRange && op.Outcome == chaos.OK {
			op.Known, op.List = reads.Record(op.Key, op.List)
		}
		ops = append(ops, op)
		done.Add(1)
		if connErr {
			renew() // no go-redis dial back-off in the measurement
		}
	}
}

// cmdFinal reads every list of the chaos workload from one Redis node
// (the final master, directly) and writes them as JSON {"l:0": [...]}.
func cmdFinal(args []string) error {
	fs := flag.NewFlagSet("final", flag.ExitOnError)
	addr := fs.String("addr", "", "Redis node to read (the final master), host:port")
	prefix := fs.String("prefix", "chaos", "key prefix")
	keys := fs.Int("keys", 4, "keys per workload")
	out := fs.String("out", "", "JSON output")
	_ = fs.Parse(args)
	if *addr == "" || *out == "" {
		return errors.New("-addr and -out are required")
	}
	c := probe.NewClient(*addr, 2*time.Second, 10*time.Second, nil)
	defer c.Close()
	final := map[string][]string{}
	for k := range *keys {
		key := "l:" + strconv.Itoa(k)
		vals, err := c.LRange(context.Background(), *prefix+":"+key, 0, -1).Result()
		if err != nil {
			return fmt.Errorf("LRANGE %s on %s: %w", key, *addr, err)
		}
		final[key] = vals
	}
	b, err := json.Marshal(final)
	if err != nil {
		return err
	}
	return os.WriteFile(*out, b, 0o644)
}

// sampleReplication asks one node's Redis for INFO replication and its
// Sentinel for SENTINEL MASTER every interval until ctx ends (the
// replication samples of the list checker, chaos.ReplSample). Short
// timeouts: a node that does not answer is recorded as such.
func sampleReplication(ctx context.Context, node, redisAddr, sentinelAddr, masterName string, nodes map[string]string, every time.Duration) []chaos.ReplSample {
	rc := probe.NewClient(redisAddr, 300*time.Millisecond, 500*time.Millisecond, nil)
	defer rc.Close()
	sc := probe.NewClient(sentinelAddr, 300*time.Millisecond, 500*time.Millisecond, nil)
	defer sc.Close()
	var out []chaos.ReplSample
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return out
		case <-tick.C:
		}
		qctx := context.WithoutCancel(ctx)
		s := chaos.ReplSample{Node: node, Sent: time.Now().UnixNano()}
		info, err := rc.Info(qctx, "replication").Result()
		s.Done = time.Now().UnixNano()
		if err != nil {
			s.Err = err.Error()
		} else {
			chaos.ParseReplInfo(&s, info, nodes)
		}
		if reply, err := sc.Do(qctx, "SENTINEL", "MASTER", masterName).Slice(); err == nil {
			fields := map[string]string{}
			for i := 0; i+1 < len(reply); i += 2 {
				fields[fmt.Sprint(reply[i])] = fmt.Sprint(reply[i+1])
			}
			chaos.ParseSentinelMaster(&s, fields, nodes)
		}
		out = append(out, s)
	}
}

func writeReplSamples(path string, samples []chaos.ReplSample) error {
	var b []byte
	for _, s := range samples {
		line, err := json.Marshal(s)
		if err != nil {
			return err
		}
		b = append(append(b, line...), '\n')
	}
	return os.WriteFile(path, b, 0o644)
}
