package cluster_test

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redhaven/redhaven/cluster"
	"github.com/redhaven/redhaven/cluster/clustertest"
)

// TestMeasureLeaderFlaps is a measurement, not a test (it runs only with
// REDHAVEN_FLAP=1): three agents, each in its own process (a child of the
// test binary, so a descheduled process stalls one node, as on separate
// machines), run for REDHAVEN_FLAP_DURATION (default 1m) while
// REDHAVEN_FLAP_HOGS busy-looping processes (default 0) compete for the
// CPU; it prints the leader changes per minute and the elections and
// step-downs behind them. REDHAVEN_FLAP_TIMINGS="heartbeat,election,lease"
// overrides the Raft timings (default: DefaultConfig's).
func TestMeasureLeaderFlaps(t *testing.T) {
	if os.Getenv("REDHAVEN_FLAP") == "" {
		t.Skip("a measurement: set REDHAVEN_FLAP=1")
	}
	dur := envDuration(t, "REDHAVEN_FLAP_DURATION", time.Minute)
	hogs, _ := strconv.Atoi(os.Getenv("REDHAVEN_FLAP_HOGS"))
	timings := os.Getenv("REDHAVEN_FLAP_TIMINGS")
	key := clustertest.Key(t)
	var binds, rafts []string
	for range 3 {
		binds = append(binds, fmt.Sprintf("127.0.0.1:%d", clustertest.FreePort(t)))
		rafts = append(rafts, fmt.Sprintf("127.0.0.1:%d", clustertest.FreePort(t)))
	}
	var (
		mu     sync.Mutex
		counts = map[string]int{}
		start  time.Time // the first leader; counting starts here
	)
	events := map[string]string{
		"election won":                   "won",
		"heartbeat timeout reached":      "follower_timeout",
		"failed to contact quorum":       "leader_stepdown",
		"entering candidate state":       "candidacy",
		"lost contact with the raft":     "contact_lost",
		"pre-vote campaign failed":       "prevote_failed",
		"election timeout reached":       "election_timeout",
		"new leader elected, stepping d": "leader_superseded",
	}
	var wg sync.WaitGroup
	for i := range 3 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestFlapChild$", "-test.v")
		cmd.Env = append(os.Environ(), "REDHAVEN_FLAP_CHILD=1", "REDHAVEN_FLAP_NAME=n"+strconv.Itoa(i+1),
			"REDHAVEN_FLAP_BIND="+binds[i], "REDHAVEN_FLAP_RAFT="+rafts[i], "REDHAVEN_FLAP_JOIN="+binds[0],
			"REDHAVEN_FLAP_KEY="+key, "REDHAVEN_FLAP_TIMINGS="+timings)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = cmd.Stdout
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { stopProcess(cmd) })
		wg.Add(1)
		go func() {
			defer wg.Done()
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				line := sc.Text()
				mu.Lock()
				if start.IsZero() && strings.Contains(line, "election won") {
					start = time.Now()
					mu.Unlock()
					continue // the first election is not a change
				}
				if !start.IsZero() {
					for s, name := range events {
						if strings.Contains(line, s) {
							counts[name]++
						}
					}
				}
				mu.Unlock()
			}
		}()
	}
	clustertest.Eventually(t, 30*time.Second, "a first leader", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return !start.IsZero()
	})
	for range hogs {
		hog := exec.Command("sh", "-c", "while :; do :; done")
		if err := hog.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { stopProcess(hog) })
	}
	load0 := loadavg()
	time.Sleep(dur) // a measurement window, not a synchronisation
	mu.Lock()
	got := make(map[string]int, len(counts))
	for k, v := range counts {
		got[k] = v
	}
	mu.Unlock()
	fmt.Printf("FLAP timings=%q hogs=%d duration=%s load=%s->%s leader_changes=%d (%.1f/min) %v\n",
		timings, hogs, dur, load0, loadavg(), got["won"], float64(got["won"])/dur.Minutes(), got)
}

// TestFlapChild is one agent of TestMeasureLeaderFlaps (its child process).
func TestFlapChild(t *testing.T) {
	if os.Getenv("REDHAVEN_FLAP_CHILD") == "" {
		t.Skip("a child of TestMeasureLeaderFlaps")
	}
	cfg := cluster.DefaultConfig()
	cfg.NodeName = os.Getenv("REDHAVEN_FLAP_NAME")
	cfg.DataDir = t.TempDir()
	cfg.Bind, cfg.RaftBind = os.Getenv("REDHAVEN_FLAP_BIND"), os.Getenv("REDHAVEN_FLAP_RAFT")
	cfg.Join = []string{os.Getenv("REDHAVEN_FLAP_JOIN")}
	cfg.BootstrapExpect = 3
	cfg.Encrypt = os.Getenv("REDHAVEN_FLAP_KEY")
	cfg.HTTPAddr, cfg.Version = "127.0.0.1:0", "test"
	if s := os.Getenv("REDHAVEN_FLAP_TIMINGS"); s != "" {
		var ds []time.Duration
		for _, f := range strings.Split(s, ",") {
			d, err := time.ParseDuration(f)
			if err != nil {
				t.Fatal(err)
			}
			ds = append(ds, d)
		}
		cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LeaderLeaseTimeout = ds[0], ds[1], ds[2]
		cfg.ContactBound = ds[0]
	}
	a, err := cluster.New(cfg, slog.New(slog.NewTextHandler(os.Stdout, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	if err := a.Run(ctx); err != nil {
		t.Fatal(err)
	}
}

// stopProcess ends a process it started: SIGTERM, SIGKILL after 10 s.
func stopProcess(cmd *exec.Cmd) {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

func envDuration(t *testing.T, key string, def time.Duration) time.Duration {
	s := os.Getenv(key)
	if s == "" {
		return def
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		t.Fatalf("%s: %v", key, err)
	}
	return d
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}
