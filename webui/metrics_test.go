package webui_test

import (
	"math"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/redhaven/redhaven/webui"
)

func parseMetrics(t *testing.T, body string) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse /metrics: %v\n%s", err, body)
	}
	return fams
}

// value returns the value of the metric of family name whose labels include
// all of labels ("k=v").
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	t.Helper()
	f := fams[name]
	if f == nil {
		t.Errorf("metric %s missing", name)
		return math.NaN()
	}
next:
	for _, m := range f.Metric {
		for _, l := range labels {
			k, v, _ := strings.Cut(l, "=")
			found := false
			for _, lp := range m.GetLabel() {
				found = found || (lp.GetName() == k && lp.GetValue() == v)
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Untyped != nil:
			return m.Untyped.GetValue()
		}
	}
	t.Errorf("metric %s%v missing", name, labels)
	return math.NaN()
}

func TestMetrics(t *testing.T) {
	src := &testSource{snap: sampleSnapshot()}
	h := newServer(t, openConfig(), src, nil).Handler()
	rec := do(h, "GET", "/metrics", nil, nil, nil)
	if rec.Code != 200 || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/plain") {
		t.Fatalf("GET /metrics = %d %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	fams := parseMetrics(t, rec.Body.String())

	for _, tt := range []struct {
		name   string
		labels []string
		want   float64
		typ    dto.MetricType
	}{
		{"redhaven_proxy_sessions_current", []string{"listener=rw"}, 412, dto.MetricType_GAUGE},
		{"redhaven_proxy_sessions_total", []string{"listener=rw"}, 182231, dto.MetricType_COUNTER},
		{"redhaven_proxy_commands_total", []string{"listener=rw"}, 98412377, dto.MetricType_COUNTER},
		{"redhaven_proxy_commands_total", []string{"listener=ro"}, 4410021, dto.MetricType_COUNTER},
		{"redhaven_proxy_bytes_in_total", []string{"listener=rw"}, 9_812_345_678, dto.MetricType_COUNTER},
		{"redhaven_proxy_bytes_out_total", []string{"listener=ro"}, 3_456_789_012, dto.MetricType_COUNTER},
		{"redhaven_proxy_errors_total", []string{"listener=rw"}, 17, dto.MetricType_COUNTER},
		{"redhaven_proxy_refused_total", []string{"listener=ro"}, 3, dto.MetricType_COUNTER},
		{"redhaven_proxy_sessions_idle", []string{"listener=rw"}, 301, dto.MetricType_GAUGE},
		{"redhaven_proxy_sessions_moved_to_own_total", []string{"listener=rw"}, 12, dto.MetricType_COUNTER},
		{"redhaven_proxy_sessions_limit", []string{"listener=rw"}, 10000, dto.MetricType_GAUGE},
		{"redhaven_proxy_commands_refused_total", []string{"command=config set masterauth"}, 2, dto.MetricType_COUNTER},
		{"redhaven_proxy_auth_failures_total", []string{"listener=rw"}, 5, dto.MetricType_COUNTER},
		{"redhaven_proxy_buffer_bytes", nil, 81920, dto.MetricType_GAUGE},
		{"redhaven_proxy_buffer_limit_bytes", nil, 4 << 30, dto.MetricType_GAUGE},
		{"redhaven_proxy_clients_closed_total", []string{"reason=http"}, 2, dto.MetricType_COUNTER},
		{"redhaven_proxy_clients_closed_total", []string{"reason=auth_timeout"}, 9, dto.MetricType_COUNTER},
		{"redhaven_backend_up", []string{"addr=" + addrA}, 1, dto.MetricType_GAUGE},
		{"redhaven_backend_up", []string{"addr=" + addrC}, 0, dto.MetricType_GAUGE},
		{"redhaven_backend_is_master", []string{"addr=" + addrA}, 1, dto.MetricType_GAUGE},
		{"redhaven_backend_is_master", []string{"addr=" + addrB}, 0, dto.MetricType_GAUGE},
		{"redhaven_backend_replication_lag_bytes", []string{"addr=" + addrB}, 872, dto.MetricType_GAUGE},
		{"redhaven_backend_replication_offset", []string{"addr=" + addrA}, 1_843_211_774, dto.MetricType_GAUGE},
		{"redhaven_backend_downtime_seconds_total", []string{"addr=" + addrC}, 194, dto.MetricType_COUNTER},
		{"redhaven_backend_check_duration_seconds", []string{"addr=" + addrA}, 0.000412, dto.MetricType_GAUGE},
		{"redhaven_sentinel_reachable", []string{"addr=127.0.0.1:26379"}, 1, dto.MetricType_GAUGE},
		{"redhaven_sentinel_reachable", []string{"addr=127.0.0.1:26381"}, 0, dto.MetricType_GAUGE},
		{"redhaven_sentinel_config_epoch", []string{"addr=127.0.0.1:26381"}, 6, dto.MetricType_GAUGE},
		{"redhaven_route_epoch", nil, 7, dto.MetricType_GAUGE},
		{"redhaven_route_has_master", nil, 1, dto.MetricType_GAUGE},
		{"redhaven_route_contradicted", nil, 0, dto.MetricType_GAUGE},
		{"redhaven_route_epoch_ahead", nil, 0, dto.MetricType_GAUGE},
		{"redhaven_node_ready", nil, 1, dto.MetricType_GAUGE},
		{"redhaven_cluster_is_leader", nil, 1, dto.MetricType_GAUGE},
		{"redhaven_cluster_members", []string{"state=alive"}, 2, dto.MetricType_GAUGE},
		{"redhaven_cluster_members", []string{"state=suspect"}, 1, dto.MetricType_GAUGE},
		{"redhaven_vip_held", nil, 1, dto.MetricType_GAUGE},
		{"redhaven_vip_lease_holder", []string{"node=node1"}, 1, dto.MetricType_GAUGE},
		{"redhaven_vip_lease_remaining_seconds", nil, 0.75, dto.MetricType_GAUGE},
		{"redhaven_vip_lease_changes_total", []string{"kind=takeover"}, 2, dto.MetricType_COUNTER},
		{"redhaven_vip_lease_changes_total", []string{"kind=release"}, 0, dto.MetricType_COUNTER},
		{"redhaven_build_info", []string{"version=0.3.0"}, 1, dto.MetricType_GAUGE},
	} {
		if got := value(t, fams, tt.name, tt.labels...); got != tt.want {
			t.Errorf("%s%v = %v, want %v", tt.name, tt.labels, got, tt.want)
		}
		if f := fams[tt.name]; f != nil && f.GetType() != tt.typ {
			t.Errorf("%s type %v, want %v", tt.name, f.GetType(), tt.typ)
		}
	}
	for _, name := range []string{"go_goroutines", "process_cpu_seconds_total"} {
		if fams[name] == nil {
			t.Errorf("%s missing (Go/process collectors)", name)
		}
	}

	// The failover histogram comes from the two failover events
	// (1.84s and 0.42s) when node keeps no FailoverStats.
	hist := func() *dto.Histogram {
		t.Helper()
		f := parseMetrics(t, do(h, "GET", "/metrics", nil, nil, nil).Body.String())["redhaven_failover_duration_seconds"]
		if f == nil || f.GetType() != dto.MetricType_HISTOGRAM {
			t.Fatalf("redhaven_failover_duration_seconds missing or not a histogram: %v", f)
		}
		return f.Metric[0].GetHistogram()
	}
	bucket := func(hg *dto.Histogram, le float64) uint64 {
		for _, b := range hg.GetBucket() {
			if b.GetUpperBound() == le {
				return b.GetCumulativeCount()
			}
		}
		t.Fatalf("no bucket le=%v", le)
		return 0
	}
	hg := hist()
	if hg.GetSampleCount() != 2 || math.Abs(hg.GetSampleSum()-2.26) > 1e-9 || bucket(hg, 0.25) != 0 || bucket(hg, 0.5) != 1 || bucket(hg, 2) != 2 {
		t.Errorf("histogram from events: count %d sum %v buckets %v", hg.GetSampleCount(), hg.GetSampleSum(), hg.GetBucket())
	}
	// node's own FailoverStats win (they survive the bounded history).
	var fs webui.FailoverStats
	for _, d := range []time.Duration{100 * time.Millisecond, 900 * time.Millisecond, 4 * time.Second} {
		fs.Observe(d)
	}
	src.update(func(s *webui.Snapshot) { s.Failovers = fs })
	hg = hist()
	if hg.GetSampleCount() != 3 || math.Abs(hg.GetSampleSum()-5) > 1e-9 || bucket(hg, 0.25) != 1 || bucket(hg, 1) != 2 || bucket(hg, 5) != 3 {
		t.Errorf("histogram from stats: count %d sum %v buckets %v", hg.GetSampleCount(), hg.GetSampleSum(), hg.GetBucket())
	}

	// Scrapes read the snapshot each time: values follow the source.
	src.setMaster(addrB, 9)
	src.update(func(s *webui.Snapshot) {
		s.Leader, s.VIP.HeldHere = false, false
		s.VIP.Holder, s.VIP.LeaseRemaining = "", 0
		s.Route.Contradicted, s.Route.EpochAhead = addrB+" answers ROLE as a replica of "+addrA, true
	})
	fams = parseMetrics(t, do(h, "GET", "/metrics", nil, nil, nil).Body.String())
	for _, tt := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"redhaven_backend_is_master", []string{"addr=" + addrA}, 0},
		{"redhaven_backend_is_master", []string{"addr=" + addrB}, 1},
		{"redhaven_route_epoch", nil, 9},
		{"redhaven_cluster_is_leader", nil, 0},
		{"redhaven_vip_held", nil, 0},
		{"redhaven_vip_lease_remaining_seconds", nil, 0},
		{"redhaven_route_contradicted", nil, 1},
		{"redhaven_route_epoch_ahead", nil, 1},
	} {
		if got := value(t, fams, tt.name, tt.labels...); got != tt.want {
			t.Errorf("after change: %s%v = %v, want %v", tt.name, tt.labels, got, tt.want)
		}
	}
	if f := fams["redhaven_vip_lease_holder"]; f != nil && len(f.Metric) > 0 {
		t.Errorf("a free lease still exports a holder: %v", f.Metric)
	}
}

// Repeated label values (a node bug) must not break the scrape.
func TestMetricsDuplicateLabels(t *testing.T) {
	snap := sampleSnapshot()
	snap.Backends = append(snap.Backends, snap.Backends[0])
	snap.Frontends = append(snap.Frontends, snap.Frontends[0])
	// And a service named twice.
	two := twoServices()
	two.Services = append(two.Services, two.Services[1])
	two.Services[1].Backends = append(two.Services[1].Backends, two.Services[1].Backends[0])
	for _, snap := range []webui.Snapshot{snap, two} {
		h := newServer(t, openConfig(), &testSource{snap: snap}, nil).Handler()
		rec := do(h, "GET", "/metrics", nil, nil, nil)
		if rec.Code != 200 {
			t.Fatalf("GET /metrics = %d: %s", rec.Code, rec.Body)
		}
		parseMetrics(t, rec.Body.String())
	}
}
