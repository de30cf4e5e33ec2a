package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
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
