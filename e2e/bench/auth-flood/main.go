// auth-flood: does a flood of wrong basic-auth passwords on the HTTP port
// slow the proxy down? Measures PING latency through the proxy (open loop:
// each PING is due at a fixed time and its latency counts from then, so a
// stall is not hidden by the probe waiting; a probe that falls more than
// -duration behind stops and counts the PINGs it still owed with the
// latency they had reached) with no flood and with floods of
// wrong passwords at the given rates, interleaved in rounds, and prints p50,
// p99 and the ratio of each p99 to the same round's no-flood p99.
//
//	auth-flood -redis 127.0.0.1:7300 -http 127.0.0.1:7390 -user admin \
//	  [-floods 0,16,1000,1000x100] [-rounds 3] [-duration 8s] [-warmup 2s] \
//	  [-ping-rate 2000] [-ping-conns 4] [-flood-conns 8] [-agent-pid PID]
//
// A flood "R" sends R wrong passwords a second from 127.0.0.1, a new one
// each time (as an attacker who guesses would: every one costs a bcrypt
// unless a limit refuses it first); "RxN" spreads them over N source
// addresses 127.0.1.1..N. Suffixes: "@same" sends one wrong password again
// and again (a client with a stale password; the agent's cache of refused
// credentials answers all but the first without bcrypt); "@sink" sends the
// same flood to a sink instead of the agent (the control: a process of this
// tool on 127.0.0.2, pinned with the probe, that answers every connection
// as the agent's accept-time refusal does: a canned 429 after 5 s while
// fewer than 1,024 wait), so that what the flood costs the measuring side
// shows apart from what it costs the agent; "@cpuN" runs the flood process
// on CPU N (taskset). With -agent-pid, each phase also reports the agent's
// CPU time (/proc/PID/stat utime+stime), the flood's and the busy time of
// each CPU (/proc/stat) over the measured window. With the user's password
// in $AUTH_FLOOD_PASSWORD, each phase reports the bcrypt comparisons the
// agent ran during it, warm-up included (redhaven_http_auth_bcrypt_total,
// read from 127.0.0.3, an address no flood uses, before the flood starts
// and after it stops; "-" when the agent has no such metric). Only loopback addresses
// are accepted; every loop is bounded by the durations. Stdlib only.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

type flood struct {
	name  string
	rate  int
	addrs int
	sink  bool // to the sink, not the agent (control)
	same  bool // one wrong password again and again
	cpu   int  // the flood process's CPU (taskset), -1: the probe's
}

// spec is the flood's -flood-child argument.
func (f flood) spec() string {
	s := fmt.Sprintf("%dx%d", f.rate, f.addrs)
	if f.same {
		s += "@same"
	}
	return s
}

func parseFloods(s string) ([]flood, error) {
	var fs []flood
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		base, mods, _ := strings.Cut(f, "@")
		r, n, ok := strings.Cut(base, "x")
		rate, err := strconv.Atoi(r)
		if err != nil || rate < 0 || rate > 100000 {
			return nil, fmt.Errorf("flood %q: want RATE or RATExADDRS", f)
		}
		addrs := 1
		if ok {
			if addrs, err = strconv.Atoi(n); err != nil || addrs < 1 || addrs > 250 {
				return nil, fmt.Errorf("flood %q: ADDRS must be 1..250", f)
			}
		}
		fl := flood{rate: rate, addrs: addrs, cpu: -1}
		for m := range strings.SplitSeq(mods, "@") {
			switch {
			case m == "":
			case m == "sink":
				fl.sink = true
			case m == "same":
				fl.same = true
			case strings.HasPrefix(m, "cpu"):
				if fl.cpu, err = strconv.Atoi(m[3:]); err != nil || fl.cpu < 0 || fl.cpu > 1023 {
					return nil, fmt.Errorf("flood %q: want @cpuN", f)
				}
			default:
				return nil, fmt.Errorf("flood %q: unknown @%s (want @same, @sink or @cpuN)", f, m)
			}
		}
		if rate == 0 && (fl.sink || fl.same || fl.cpu >= 0) {
			return nil, fmt.Errorf("flood %q: @ needs a rate", f)
		}
		fl.name = "no flood"
		if rate > 0 {
			fl.name = fmt.Sprintf("%d/s", rate)
			if addrs > 1 {
				fl.name += fmt.Sprintf(" x%d addrs", addrs)
			}
			if fl.same {
				fl.name += " same pw"
			}
			if fl.sink {
				fl.name += " to sink"
			}
			if fl.cpu >= 0 {
				fl.name += fmt.Sprintf(" cpu%d", fl.cpu)
			}
		}
		fs = append(fs, fl)
	}
	if len(fs) == 0 || fs[0].rate != 0 {
		return nil, errors.New("-floods must start with 0 (the no-flood baseline)")
	}
	return fs, nil
}

func loopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%s: only loopback addresses", addr)
	}
	return nil
}

func main() {
	redisAddr := flag.String("redis", "127.0.0.1:7300", "the proxy's address")
	httpAddr := flag.String("http", "127.0.0.1:7390", "the agent's HTTP address")
	user := flag.String("user", "admin", "an http.auth user (its password is never sent)")
	floodsFlag := flag.String("floods", "0,16,1000,1000x100,1000x100@sink", "wrong passwords a second per phase (RATE or RATExADDRS, then @same, @sink, @cpuN); the first must be 0")
	rounds := flag.Int("rounds", 3, "interleaved rounds")
	duration := flag.Duration("duration", 8*time.Second, "PING measurement per phase")
	warmup := flag.Duration("warmup", 2*time.Second, "flood before the measurement starts")
	pingRate := flag.Int("ping-rate", 2000, "PINGs a second, over -ping-conns connections")
	pingConns := flag.Int("ping-conns", 4, "PING connections")
	floodConns := flag.Int("flood-conns", 8, "HTTP connections per flood source address")
	agentPID := flag.Int("agent-pid", 0, "the agent's PID, to report its CPU time per phase (0: not reported)")
	child := flag.String("flood-child", "", "internal: be the flood process of one phase (RATE or RATExADDRS)")
	sinkChild := flag.Bool("sink-child", false, "internal: be the sink of the @sink floods (until stdin closes)")
	flag.Parse()
	if *child != "" {
		os.Exit(floodChild(*child, *httpAddr, *user, *floodConns))
	}
	if *sinkChild {
		os.Exit(runSink())
	}
	floods, err := parseFloods(*floodsFlag)
	if err == nil {
		err = errors.Join(loopback(*redisAddr), loopback(*httpAddr))
	}
	if err == nil && (*rounds < 1 || *rounds > 20 || *pingRate < 1 || *pingConns < 1 || *floodConns < 1 || *duration <= 0 || *agentPID < 0) {
		err = errors.New("bad -rounds, -ping-rate, -ping-conns, -flood-conns, -duration or -agent-pid")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "auth-flood:", err)
		os.Exit(2)
	}
	var sink *exec.Cmd
	sinkAddr := ""
	// fail ends the run; the sink ends with it (its stdin closes).
	fail := func(format string, a ...any) {
		fmt.Fprintf(os.Stderr, "auth-flood: "+format+"\n", a...)
		os.Exit(1)
	}
	if slices.ContainsFunc(floods, func(f flood) bool { return f.sink }) {
		if sink, sinkAddr, err = startSink(); err != nil {
			fail("start sink: %v", err)
		}
	}
	type result struct {
		p50, p99 time.Duration
		pings    int
		codes    map[int]int
		sent     int64
		cpu      cpuTimes
		bcrypts  int // -1: unknown
	}
	res := make([][]result, len(floods)) // [flood][round]
	for r := 0; r < *rounds; r++ {
		for i, f := range floods {
			// The flood runs in a process of its own, so that its goroutines
			// do not delay the probe's.
			var fc *exec.Cmd
			var fout bytes.Buffer
			bcryptsBefore := bcryptCount(*httpAddr, *user)
			if f.rate > 0 {
				target := *httpAddr
				if f.sink {
					target = sinkAddr
				}
				args := []string{os.Args[0], "-flood-child", f.spec(), "-http", target, "-user", *user, "-flood-conns", strconv.Itoa(*floodConns)}
				if f.cpu >= 0 {
					args = append([]string{"taskset", "-c", strconv.Itoa(f.cpu)}, args...)
				}
				fc = exec.Command(args[0], args[1:]...)
				fc.Stdout, fc.Stderr = &fout, os.Stderr
				if err := fc.Start(); err != nil {
					fail("start flood: %v", err)
				}
				time.Sleep(*warmup)
				_ = fc.Process.Signal(syscall.SIGUSR1) // start counting
			}
			pids := cpuPIDs{agent: *agentPID}
			if fc != nil {
				pids.flood = fc.Process.Pid
			}
			if sink != nil {
				pids.sink = sink.Process.Pid
			}
			before := readCPU(pids)
			lat, err := pingProbe(*redisAddr, *pingRate, *pingConns, *duration)
			rr := result{pings: len(lat), cpu: readCPU(pids).sub(before)}
			if fc != nil {
				_ = fc.Process.Signal(syscall.SIGTERM)
				if werr := fc.Wait(); werr != nil {
					fail("flood process: %v", werr)
				}
				var out struct {
					Codes map[int]int
					Sent  int64
				}
				if jerr := json.Unmarshal(fout.Bytes(), &out); jerr != nil {
					fail("flood process output %q: %v", fout.String(), jerr)
				}
				rr.codes, rr.sent = out.Codes, out.Sent
			}
			if err != nil {
				fail("round %d, %s: %v", r+1, f.name, err)
			}
			rr.bcrypts = -1
			if a, b := bcryptsBefore, bcryptCount(*httpAddr, *user); a >= 0 && b >= 0 {
				rr.bcrypts = b - a
			}
			rr.p50, rr.p99 = quantile(lat, 0.50), quantile(lat, 0.99)
			res[i] = append(res[i], rr)
			fmt.Fprintf(os.Stderr, "round %d %-26s pings %6d p50 %8s p99 %8s bcrypts %2d cpu ms agent %4d flood %4d sink %4d cpu0 %4d cpu1 %4d http %v\n",
				r+1, f.name, rr.pings, rr.p50, rr.p99, rr.bcrypts, rr.cpu.agent.Milliseconds(), rr.cpu.flood.Milliseconds(), rr.cpu.sink.Milliseconds(),
				rr.cpu.busy[0].Milliseconds(), rr.cpu.busy[1].Milliseconds(), rr.codes)
		}
	}
	if sink != nil {
		_ = sink.Process.Signal(syscall.SIGTERM)
		_ = sink.Wait()
	}
	fmt.Printf("%-26s %8s %8s %8s %8s %11s %8s %8s %8s %8s %8s %8s %6s %6s %6s\n", "flood (wrong pw/s)", "sent/s", "p50", "p99",
		"p99/none", "min-max", "bcrypts", "agent", "flood", "cpu0", "cpu1", "401", "429", "503", "other")
	for i, f := range floods {
		var p50s, p99s, ratios, agent, fl, cpu0, cpu1 []float64
		codes := map[int]int{}
		var sent int64
		bcrypts := 0
		for r, rr := range res[i] {
			if bcrypts >= 0 && rr.bcrypts >= 0 {
				bcrypts += rr.bcrypts
			} else {
				bcrypts = -1
			}
			p50s = append(p50s, float64(rr.p50))
			p99s = append(p99s, float64(rr.p99))
			ratios = append(ratios, float64(rr.p99)/float64(res[0][r].p99))
			agent = append(agent, float64(rr.cpu.agent.Milliseconds()))
			fl = append(fl, float64(rr.cpu.flood.Milliseconds()))
			if f.sink {
				fl[len(fl)-1] += float64(rr.cpu.sink.Milliseconds())
			}
			cpu0 = append(cpu0, float64(rr.cpu.busy[0].Milliseconds()))
			cpu1 = append(cpu1, float64(rr.cpu.busy[1].Milliseconds()))
			for k, v := range rr.codes {
				codes[k] += v
			}
			sent += rr.sent
		}
		other := 0
		for k, v := range codes {
			if k != 401 && k != 429 && k != 503 {
				other += v
			}
		}
		bc := "-"
		if bcrypts >= 0 {
			bc = strconv.Itoa(bcrypts)
		}
		fmt.Printf("%-26s %8.1f %8s %8s %8.2f %11s %8s %8.0f %8.0f %8.0f %8.0f %8d %6d %6d %6d\n", f.name,
			float64(sent)/float64(*rounds)/duration.Seconds(),
			time.Duration(median(p50s)).Round(time.Microsecond), time.Duration(median(p99s)).Round(time.Microsecond),
			median(ratios), fmt.Sprintf("%.2f-%.2f", slices.Min(ratios), slices.Max(ratios)), bc,
			median(agent), median(fl), median(cpu0), median(cpu1), codes[401], codes[429], codes[503], other)
	}
	fmt.Printf("(medians over %d interleaved rounds of %s each; p99/none is the median of same-round ratios, min-max their range; "+
		"bcrypts: comparisons the agent ran in all rounds of the phase, warm-up included (- without $AUTH_FLOOD_PASSWORD or the metric); "+
		"agent, flood (with the sink's for \"to sink\"), cpu0, cpu1: CPU ms used in the window (/proc); 401 = a bcrypt ran, or for \"same pw\" the cached refusal; status counts are totals of the measured windows)\n",
		*rounds, *duration)
}
func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func quantile(lat []time.Duration, q float64) time.Duration {
	if len(lat) == 0 {
		return 0
	}
	s := slices.Clone(lat)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

// pingProbe sends PINGs at rate over conns connections for d; each PING's
// latency counts from the time it was due.
func pingProbe(addr string, rate, conns int, d time.Duration) ([]time.Duration, error) {
	interval := time.Duration(float64(time.Second) * float64(conns) / float64(rate))
	var mu sync.Mutex
	var all []time.Duration
	errc := make(chan error, conns)
	var wg sync.WaitGroup
	start := time.Now()
	end := start.Add(d)
	for c := 0; c < conns; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
			if err != nil {
				errc <- err
				return
			}
			defer conn.Close()
			rd := bufio.NewReader(conn)
			var lat []time.Duration
			due := start.Add(interval * time.Duration(c) / time.Duration(conns))
			// A starved proxy falls behind the schedule: past hardEnd the
			// PINGs still due are not sent, each counted with the latency it
			// has at least (now - due), so that the probe ends in bounded time.
			hardEnd := end.Add(d)
			for n := 0; due.Before(end) && n < 10_000_000; n++ {
				if time.Now().After(hardEnd) {
					now := time.Now()
					for ; due.Before(end); due = due.Add(interval) {
						lat = append(lat, now.Sub(due))
					}
					break
				}
				if w := time.Until(due); w > 0 {
					time.Sleep(w)
				}
				conn.SetDeadline(time.Now().Add(30 * time.Second))
				if _, err := conn.Write([]byte("PING\r\n")); err != nil {
					errc <- err
					return
				}
				line, err := rd.ReadString('\n')
				if err != nil || line != "+PONG\r\n" {
					errc <- fmt.Errorf("PING: %q %v", line, err)
					return
				}
				lat = append(lat, time.Since(due))
				due = due.Add(interval)
			}
			mu.Lock()
			all = append(all, lat...)
			mu.Unlock()
		}(c)
	}
	wg.Wait()
	select {
	case err := <-errc:
		return all, err
	default:
	}
	return all, nil
}

// floodChild floods until SIGTERM (counting from SIGUSR1 on), then prints
// its counts as JSON.
func floodChild(spec, httpAddr, user string, conns int) int {
	fs, err := parseFloods("0," + spec)
	if err == nil {
		err = loopback(httpAddr)
	}
	if err != nil || len(fs) != 2 {
		fmt.Fprintln(os.Stderr, "auth-flood: -flood-child:", err)
		return 2
	}
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGUSR1, syscall.SIGTERM)
	ctx, cancel := context.WithCancel(context.Background())
	fl := startFlood(ctx, httpAddr, user, fs[1], conns)
	limit := time.NewTimer(10 * time.Minute) // bounded even if the parent dies
	defer limit.Stop()
wait:
	for {
		select {
		case s := <-sig:
			if s == syscall.SIGUSR1 {
				fl.reset()
				continue
			}
			break wait
		case <-limit.C:
			break wait
		}
	}
	cancel()
	fl.wait()
	codes, sent := fl.counts()
	b, _ := json.Marshal(struct {
		Codes map[int]int
		Sent  int64
	}{codes, sent})
	os.Stdout.Write(b)
	return 0
}

// flooder sends wrong passwords at a fixed rate; a tick with every
// connection busy is skipped (and not counted as sent).
type flooder struct {
	mu    sync.Mutex
	codes map[int]int
	sent  atomic.Int64
	wg    sync.WaitGroup
}

func startFlood(ctx context.Context, httpAddr, user string, f flood, conns int) *flooder {
	fl := &flooder{codes: map[int]int{}}
	work := make(chan int)
	var seq atomic.Int64
	for a := 0; a < f.addrs; a++ {
		var local net.Addr
		if f.addrs > 1 {
			local = &net.TCPAddr{IP: net.IPv4(127, 0, 1, byte(a+1))}
		}
		tr := &http.Transport{
			DialContext:         (&net.Dialer{LocalAddr: local, Timeout: 2 * time.Second}).DialContext,
			MaxIdleConnsPerHost: conns,
		}
		client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
		for c := 0; c < conns; c++ {
			fl.wg.Add(1)
			go func() {
				defer fl.wg.Done()
				defer tr.CloseIdleConnections()
				for range work {
					req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+httpAddr+"/api/v1/stats", nil)
					pw := "wrong-same"
					if !f.same {
						pw = "wrong-" + strconv.FormatInt(seq.Add(1), 10)
					}
					req.SetBasicAuth(user, pw)
					resp, err := client.Do(req)
					code := -1
					if err == nil {
						io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
						resp.Body.Close()
						code = resp.StatusCode
					}
					if ctx.Err() != nil {
						continue
					}
					fl.mu.Lock()
					fl.codes[code]++
					fl.mu.Unlock()
				}
			}()
		}
	}
	fl.wg.Add(1)
	go func() {
		defer fl.wg.Done()
		defer close(work)
		interval := time.Second / time.Duration(f.rate)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				select {
				case work <- 0:
					fl.sent.Add(1)
				default:
				}
			}
		}
	}()
	return fl
}

func (fl *flooder) reset() {
	fl.mu.Lock()
	clear(fl.codes)
	fl.mu.Unlock()
	fl.sent.Store(0)
}

func (fl *flooder) wait() { fl.wg.Wait() }

func (fl *flooder) counts() (map[int]int, int64) {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	return maps(fl.codes), fl.sent.Load()
}

func maps(m map[int]int) map[int]int {
	c := make(map[int]int, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// bcryptCount reads redhaven_http_auth_bcrypt_total from the agent with the
// password in $AUTH_FLOOD_PASSWORD, from 127.0.0.3 (an address no flood
// uses, so that the login does not exempt a flood's address from the
// agent's refusal at accept); -1 when it cannot.
func bcryptCount(httpAddr, user string) int {
	pw := os.Getenv("AUTH_FLOOD_PASSWORD")
	if pw == "" {
		return -1
	}
	tr := &http.Transport{DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 3)}, Timeout: 2 * time.Second}).DialContext}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequest("GET", "http://"+httpAddr+"/metrics", nil)
	if err != nil {
		return -1
	}
	req.SetBasicAuth(user, pw)
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 8<<20))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "redhaven_http_auth_bcrypt_total "); ok {
			if f, err := strconv.ParseFloat(v, 64); err == nil {
				return int(f)
			}
		}
	}
	return -1
}
