package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redhaven/redhaven/e2e/redistest"
	"github.com/redhaven/redhaven/e2e/testutil"
)

// TestFailoverService: `redhaven failover [SERVICE]` against an agent with
// two services: without a name it names both and asks nothing of the
// agent; an unknown name likewise; with a name it asks for that
// service's failover and waits for that service's new master.
func TestFailoverService(t *testing.T) {
	var mu sync.Mutex
	var asked []string
	cacheMaster, cacheEpoch := "10.0.0.2:6379", 1
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		switch r.URL.Path {
		case "/api/v1/stats":
			_ = json.NewEncoder(w).Encode(map[string]any{"node": "n1", "route": map[string]any{"master": "10.0.0.1:6379", "epoch": 5},
				"services": []map[string]any{
					{"name": "main", "route": map[string]any{"master": "10.0.0.1:6379", "epoch": 5}},
					{"name": "cache", "route": map[string]any{"master": cacheMaster, "epoch": cacheEpoch}},
				}})
		case "/api/v1/failover":
			var body map[string]string
			_ = json.NewDecoder(r.Body).Decode(&body)
			asked = append(asked, body["service"])
			cacheMaster, cacheEpoch = "10.0.0.3:6379", 2 // the failover is done at once
			_ = json.NewEncoder(w).Encode(map[string]any{"message": "cache: planned failover requested", "node": "n1"})
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	for _, tt := range []struct {
		args     []string
		code     int
		out, err string
	}{
		{[]string{"failover", "--addr", srv.URL}, exitUsage, "", `several services; name one: "main", "cache"`},
		{[]string{"failover", "--addr", srv.URL, "queue"}, exitUsage, "", `service "queue": not routed by n1 (services: "main", "cache")`},
		{[]string{"failover", "--addr", srv.URL, "cache"}, exitOK, "new master 10.0.0.3:6379 (epoch 2)", ""},
	} {
		var out, errb bytes.Buffer
		if code := run(tt.args, &out, &errb); code != tt.code || !strings.Contains(out.String(), tt.out) || !strings.Contains(errb.String(), tt.err) {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want %d, %q, %q", tt.args, code, out.String(), errb.String(), tt.code, tt.out, tt.err)
		}
	}
	if len(asked) != 1 || asked[0] != "cache" {
		t.Errorf("failovers asked of the agent: %q, want only cache", asked)
	}
}

// TestBackendService: with several services the backend commands name
// the service whose Redis nodes include the address; with one, none.
func TestBackendService(t *testing.T) {
	var s apiStats
	body := `{"services": [{"name": "main", "backends": [{"addr": "10.0.0.1:6379"}]},
		{"name": "cache", "backends": [{"addr": "10.0.0.2:6379"}, {"addr": "10.0.0.3:6379"}]}]}`
	if err := json.Unmarshal([]byte(body), &s); err != nil {
		t.Fatal(err)
	}
	for addr, want := range map[string]string{"10.0.0.1:6379": "main", "10.0.0.3:6379": "cache", "10.0.0.9:6379": ""} {
		if got := backendService(s, addr); got != want {
			t.Errorf("backendService(%s) = %q, want %q", addr, got, want)
		}
	}
	s.Services = s.Services[:1]
	if got := backendService(s, "10.0.0.1:6379"); got != "" {
		t.Errorf("one service: %q, want \"\"", got)
	}
}

// failoverStats is a stats answer for one service "main" with route
// master/epoch/reason and, when id is not 0, that latest planned failover.
func failoverStats(master string, epoch int64, reason string, id uint64, status, result string) apiStats {
	var s apiStats
	body := map[string]any{"node": "n1", "services": []map[string]any{{"name": "main",
		"route": map[string]any{"master": master, "epoch": epoch, "reason": reason}}}}
	if id != 0 {
		body["services"].([]map[string]any)[0]["planned_failover"] = map[string]any{"id": id, "status": status, "result": result}
	}
	b, _ := json.Marshal(body)
	if err := json.Unmarshal(b, &s); err != nil {
		panic(err)
	}
	return s
}

const (
	abortedReason = "planned failover aborted: writes resumed" // node/failover.go restore
	pausedReason  = "planned failover: writes paused"          // node.pauseReason
)

// TestFailoverOutcome: what `redhaven failover` makes of one stats answer
// while it waits for its request 4 (old master A at epoch 5).
func TestFailoverOutcome(t *testing.T) {
	old := apiRoute{Master: "A", Epoch: 5}
	for _, tt := range []struct {
		name     string
		s        apiStats
		id       uint64
		done     bool
		msg, err string // substrings; "" err: no error
	}{
		{"an older abort is not this one", failoverStats("A", 5, abortedReason, 3, "completed", "failed: old"), 4, false, "", ""},
		{"paused while it runs", failoverStats("", 5, pausedReason, 4, "pending", ""), 4, false, "pending", ""},
		{"not applied here yet", failoverStats("A", 5, "", 0, "", ""), 4, false, "", ""},
		{"aborted: writes resumed", failoverStats("A", 5, abortedReason, 4, "completed", "failed: replicas did not catch up: x"), 4, false, "",
			"the leader aborted the failover (request 4): replicas did not catch up: x; writes resumed on A (epoch 5)"},
		{"aborted, still paused", failoverStats("", 5, pausedReason, 4, "completed", "failed: pause writes: y; restoring the route also failed: z"), 4, false, "",
			"pause writes: y; restoring the route also failed: z; no master committed now"},
		{"new master", failoverStats("B", 6, "planned failover", 4, "completed", "ok: new master B epoch 6 after 1s"), 4, true, "new master B (epoch 6)", ""},
		{"completed ok, route moved on", failoverStats("A", 7, "switch-master", 4, "completed", "ok: new master B epoch 6 after 1s"), 4, true, "failover done: ok: new master B", ""},
		{"an older agent: the route only", failoverStats("A", 5, abortedReason, 0, "", ""), 0, false, "", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			done, msg, err := failoverOutcome(tt.s, "", old, tt.id)
			if done != tt.done || !strings.Contains(msg, tt.msg) || (tt.msg == "") != (msg == "") {
				t.Errorf("done %v, msg %q; want %v, %q", done, msg, tt.done, tt.msg)
			}
			if tt.err == "" && err != nil || tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)) {
				t.Errorf("err %v, want %q", err, tt.err)
			}
		})
	}
}

// TestFailoverAborted: the leader aborts the request the CLI made (after
// an earlier abort left the same route): the CLI says so at once, with
// the leader's reason, and exits 1, instead of waiting 60s.
func TestFailoverAborted(t *testing.T) {
	var mu sync.Mutex
	polls := -1 // stats answers since the request; -1: not asked yet
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		switch r.URL.Path {
		case "/api/v1/stats":
			s := failoverStats("10.0.0.1:6379", 5, abortedReason, 3, "completed", "failed: an earlier abort")
			if polls >= 0 {
				polls++
				s = failoverStats("", 5, pausedReason, 4, "pending", "")
			}
			if polls > 3 {
				s = failoverStats("10.0.0.1:6379", 5, abortedReason, 4, "completed", "failed: no replica in sync with the master")
			}
			_ = json.NewEncoder(w).Encode(s)
		case "/api/v1/failover":
			polls = 0
			_ = json.NewEncoder(w).Encode(map[string]any{"ok": true, "message": "planned failover requested", "node": "n2", "forwarded": true, "id": 4})
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	var out, errb bytes.Buffer
	started := time.Now()
	code := run([]string{"failover", "--addr", srv.URL}, &out, &errb)
	want := "redhaven failover: the leader aborted the failover (request 4): no replica in sync with the master; writes resumed on 10.0.0.1:6379 (epoch 5)\n"
	if code != exitError || errb.String() != want || !strings.Contains(out.String(), "waiting for the new master (request 4)") {
		t.Errorf("exit %d, stdout %q, stderr %q; want %d and %q", code, out.String(), errb.String(), exitError, want)
	}
	if took := time.Since(started); took > 10*time.Second {
		t.Errorf("took %v to report the abort", took)
	}
}

// TestFailoverAbortedByAgent: a real agent whose master has no replica
// left aborts the planned failover ("no replica in sync"); the CLI
// reports the leader's reason at once and exits 1, also when asked again
// (the earlier abort left the same route behind).
func TestFailoverAbortedByAgent(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	set := redistest.StartSet(t, redistest.SetOptions{Replicas: 1, DownAfter: 5 * time.Second})
	nodes, socks, _ := startCLIAgents(t, set, 1)
	n := nodes[0]
	master := set.Master.Addr
	testutil.Eventually(t, 30*time.Second, "the agent routes to the master", func() bool {
		return n.Cluster().State().Service(n.Service()).Route.Master == master
	})
	for _, r := range set.Replicas {
		r.Kill()
	}
	mc := set.Master.Client()
	defer mc.Close()
	testutil.Eventually(t, 10*time.Second, "the master has no replica", func() bool {
		info, err := mc.Info(context.Background(), "replication").Result()
		return err == nil && strings.Contains(info, "connected_slaves:0")
	})
	for i := range 2 {
		var out, errb bytes.Buffer
		started := time.Now()
		code := run([]string{"failover", "--socket", socks[0]}, &out, &errb)
		took := time.Since(started)
		want := "no replica in sync with the master; writes resumed on " + master
		if code != exitError || !strings.Contains(errb.String(), "the leader aborted the failover (request ") || !strings.Contains(errb.String(), want) {
			t.Fatalf("run %d: exit %d, stdout %q, stderr %q; want %d and %q", i+1, code, out.String(), errb.String(), exitError, want)
		}
		if took > 15*time.Second {
			t.Errorf("run %d: took %v to report the abort", i+1, took)
		}
		t.Logf("run %d (%v): %s", i+1, took.Round(time.Millisecond), strings.TrimSpace(errb.String()))
	}
}
