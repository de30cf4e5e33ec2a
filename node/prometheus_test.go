package node

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/redhaven/redhaven/e2e/redistest"
	"github.com/redhaven/redhaven/e2e/testutil"
)

// The shipped dashboard and alert rules (packaging/nfpm.yaml installs
// them under /usr/share/redhaven).
var (
	shippedRules     = filepath.Join("..", "packaging", "prometheus", "redhaven-rules.yml")
	shippedDashboard = filepath.Join("..", "packaging", "grafana", "redhaven.json")
)

// notYetExported are metric names the dashboard and the rules may use
// although a scrape of a fresh agent does not show them:
// redhaven_cluster_rejected_connections_total has a series only once a
// connection was refused (node's TestRejectedConnectionsMetric);
// redhaven_vip_lease_holder only while a node holds the VIP lease (vip.mode
// netlink).
var notYetExported = []string{"redhaven_route_contradicted", "redhaven_cluster_rejected_connections_total", "redhaven_vip_lease_holder"}

// testFor replaces every alert's `for:` in the shipped rules so that the
// test does not wait the production durations (30s and more): an alert
// whose expression holds is pending at the first evaluation and firing
// one second later.
const testFor = "1s"

// TestPrometheusScrapesAgent runs Debian's prometheus with the shipped
// alert rules, scraping a real agent in front of real redis + Sentinel.
// Before the master is killed no alert is pending or firing; after the
// kill Prometheus shows the failover (failover count and route epoch up,
// the new master in redhaven_backend_is_master) and RedhavenBackendDown
// fires for the killed node only. Every PromQL expression of the shipped
// dashboard and rules runs in that Prometheus and uses only metric names it
// scraped from the agent.
func TestPrometheusScrapesAgent(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	promBin, promtool := lookPrometheus(t)

	// promtool must accept the shipped file as it is.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, promtool, "check", "rules", shippedRules).CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules %s: %v\n%s", shippedRules, err, out)
	}
	rules := shortenFor(t, shippedRules, testFor)
	if out, err := exec.CommandContext(ctx, promtool, "check", "rules", rules).CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules on the test copy: %v\n%s", err, out)
	}

	set := redistest.StartSet(t, redistest.SetOptions{DownAfter: time.Second})
	n := startAgent(t, agentConfig(t, set))
	oldMaster := set.Master.Addr
	testutil.Eventually(t, 15*time.Second, "agent routes to the master", func() bool {
		return n.services[0].routes.Route().Master == oldMaster
	})
	p := startPrometheus(t, promBin, n.HTTPAddr().String(), rules)

	// Scraped: three backends up, the master committed.
	var seen time.Time
	testutil.Eventually(t, 20*time.Second, "prometheus has scraped the agent (3 backends up, master "+oldMaster+")", func() bool {
		up, err1 := p.query(`redhaven_backend_up{job="redhaven"} == 1`)
		m, err2 := p.query(`redhaven_backend_is_master{job="redhaven"} == 1`)
		seen = time.Now()
		return err1 == nil && err2 == nil && len(up) == 3 && len(m) == 1 && m[0].Metric["addr"] == oldMaster
	})
	// Before the kill: once the rules were evaluated for longer than
	// testFor on that data, no alert is pending or firing.
	testutil.Eventually(t, 20*time.Second, "rules evaluated after the first scrape", func() bool {
		last, err := p.lastEvaluation()
		return err == nil && last.After(seen.Add(time.Second+500*time.Millisecond))
	})
	if alerts := p.alerts(t); len(alerts) != 0 {
		t.Fatalf("alerts before the master was killed: %v", alerts)
	}
	failovers0 := p.scalar(t, `redhaven_failover_duration_seconds_count{job="redhaven"}`)
	epoch0 := p.scalar(t, `redhaven_route_epoch{job="redhaven"}`)

	set.Master.Kill() // SIGKILL
	var newMaster string
	testutil.Eventually(t, 20*time.Second, "agent routes to a new master", func() bool {
		newMaster = n.services[0].routes.Route().Master
		return newMaster != "" && newMaster != oldMaster
	})

	// The failover in the metrics, as Prometheus stored them.
	testutil.Eventually(t, 20*time.Second, "prometheus shows the failover", func() bool {
		m, err := p.query(`redhaven_backend_is_master{job="redhaven"} == 1`)
		return err == nil && len(m) == 1 && m[0].Metric["addr"] == newMaster &&
			p.value(`redhaven_failover_duration_seconds_count{job="redhaven"}`) > failovers0 &&
			p.value(`redhaven_route_epoch{job="redhaven"}`) > epoch0 &&
			p.value(`redhaven_backend_up{job="redhaven",addr="`+oldMaster+`"}`) == 0
	})
	// Per service: the service label (Sentinel's master name) on the
	// route and backend series, and redis_exporter's label names on the
	// master info, so that dashboards can join the two.
	svc := set.MasterName
	testutil.Eventually(t, 20*time.Second, "prometheus shows "+svc+"'s new master in redhaven_service_master_info", func() bool {
		m, err := p.query(`redhaven_service_master_info{job="redhaven"} == 1`)
		return err == nil && len(m) == 1 && m[0].Metric["service"] == svc && m[0].Metric["master_name"] == svc &&
			m[0].Metric["master_address"] == newMaster
	})
	if m, err := p.query(`redhaven_backend_is_master{job="redhaven",service="` + svc + `"} == 1`); err != nil || len(m) != 1 || m[0].Metric["addr"] != newMaster {
		t.Errorf("redhaven_backend_is_master{service=%q} == 1: %v, %v; want %s", svc, m, err, newMaster)
	}
	if v := p.value(`redhaven_service_ready{job="redhaven",service="` + svc + `"}`); v != 1 {
		t.Errorf("redhaven_service_ready{service=%q} = %v, want 1", svc, v)
	}
	took := p.scalar(t, `redhaven_failover_duration_seconds_sum{job="redhaven"}`)
	t.Logf("prometheus: failovers %v -> %v, epoch %v -> %v, failover duration sum %.3fs, new master %s",
		failovers0, p.value(`redhaven_failover_duration_seconds_count{job="redhaven"}`), epoch0,
		p.value(`redhaven_route_epoch{job="redhaven"}`), took, newMaster)

	// The alert: RedhavenBackendDown fires for the killed node, for no other.
	var alerts []alert
	var down alert
	testutil.Eventually(t, 20*time.Second, "RedhavenBackendDown firing for "+oldMaster, func() bool {
		alerts = p.alerts(t)
		for _, a := range alerts {
			if a.Labels["alertname"] == "RedhavenBackendDown" && a.Labels["addr"] == oldMaster && a.State == "firing" {
				down = a
				return true
			}
		}
		return false
	})
	if s := down.Annotations["summary"]; !strings.Contains(s, oldMaster) || !strings.Contains(s, "service "+set.MasterName) || strings.Contains(s, "{{") {
		t.Errorf("RedhavenBackendDown summary %q does not name %s and service %s", s, oldMaster, set.MasterName)
	}
	for _, a := range alerts {
		if a.Labels["alertname"] == "RedhavenBackendDown" && a.Labels["addr"] != oldMaster {
			t.Errorf("RedhavenBackendDown %s for %s, which is up", a.State, a.Labels["addr"])
		}
		if a.Labels["alertname"] == "RedhavenNoRaftLeader" || a.Labels["alertname"] == "RedhavenAgentDown" {
			t.Errorf("%s %s with a running single-node cluster", a.Labels["alertname"], a.State)
		}
	}
	t.Logf("alerts after the kill: %v", alerts)

	// The dashboard and the rules use only metrics the agent exports, and
	// every expression runs.
	names := p.metricNames(t)
	checkExprs := func(what string, exprs []string) {
		t.Helper()
		if len(exprs) == 0 {
			t.Fatalf("%s: no PromQL expression found", what)
		}
		used := map[string]bool{}
		for _, e := range exprs {
			q := grafanaVars.Replace(e)
			if _, err := p.query(q); err != nil {
				t.Errorf("%s: %q does not run: %v", what, e, err)
			}
			ms, err := promqlMetricNames(q)
			if err != nil {
				t.Errorf("%s: %q: %v", what, e, err)
			}
			for _, m := range ms {
				used[m] = true
				if !names[m] && !slices.Contains(notYetExported, m) {
					t.Errorf("%s: %q uses %s, which the agent does not export", what, e, m)
				}
			}
		}
		t.Logf("%s: %d expressions, %d metric names", what, len(exprs), len(used))
	}
	dash := dashboardExprs(t, shippedDashboard)
	checkExprs("dashboard", dash)
	checkExprs("rules", rulesExprs(t, shippedRules))

	// The dashboard's "Committed master" panel names the new master.
	master := dashboardPanelExpr(t, shippedDashboard, "Committed master")
	got, err := p.query(grafanaVars.Replace(master))
	if err != nil || len(got) != 1 || got[0].Metric["addr"] != newMaster {
		t.Errorf("dashboard panel Committed master (%s) = %v, %v; want %s", master, got, err, newMaster)
	}
}

// TestPromQLMetricNames checks the small PromQL scanner that the
// dashboard check relies on.
func TestPromQLMetricNames(t *testing.T) {
	for _, tt := range []struct {
		expr string
		want []string
	}{
		{`up`, []string{"up"}},
		{`up{job=~"redhaven.*"} == 0`, []string{"up"}},
		{`sum by (addr) (rate(foo_total{a="b(c}", instance=~"$x"}[5m])) / bar > 10e6 and on (job) baz`, []string{"bar", "baz", "foo_total"}},
		{`max by (le) (increase(h_bucket{job=~"x"}[1m] offset 5m)) or vector(0)`, []string{"h_bucket"}},
		{`histogram_quantile(0.99, sum without (instance) (rate(h_bucket[1m])))`, []string{"h_bucket"}},
		{`a unless ignoring(x, y) group_left(z) b`, []string{"a", "b"}},
		{`sum(x) by (job) != bool 1`, []string{"x"}},
		{`label_replace(m, "dst", "$1", "src", "(.*)")`, []string{"m"}},
		{`round(max(increase(redhaven_failover_duration_seconds_count{job=~"redhaven"}[5m])))`, []string{"redhaven_failover_duration_seconds_count"}},
	} {
		got, err := promqlMetricNames(tt.expr)
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("promqlMetricNames(%q) = %q, %v; want %q", tt.expr, got, err, tt.want)
		}
	}
	for _, bad := range []string{`foo{a="b"`, `rate(foo[5m]`, `foo{a="b}`} {
		if got, err := promqlMetricNames(bad); err == nil {
			t.Errorf("promqlMetricNames(%q) = %q, want an error", bad, got)
		}
	}
}

// grafanaVars turns the dashboard's Grafana variables into values
// Prometheus accepts: the job of this test, every instance, fixed ranges.
var grafanaVars = strings.NewReplacer(
	"$__rate_interval", "1m", "$__interval", "15s", "$__range", "5m",
	"${job}", "redhaven", "$job", "redhaven", "${instance}", ".*", "$instance", ".*",
	"${service}", ".*", "$service", ".*",
)

// lookPrometheus returns the prometheus and promtool binaries, or skips
// (fails when REDHAVEN_REQUIRE names "prometheus").
func lookPrometheus(t *testing.T) (string, string) {
	t.Helper()
	var paths []string
	for _, name := range []string{"prometheus", "promtool"} {
		p, err := exec.LookPath(name)
		if err != nil {
			testutil.Require(t, "prometheus", name+" not on PATH (apt-get install prometheus, then stop its service)")
		}
		paths = append(paths, p)
	}
	return paths[0], paths[1]
}

// shortenFor writes a copy of the rules file with every `for:` set to d.
func shortenFor(t *testing.T, path, d string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	changed := 0
	var walk func(*yaml.Node)
	walk = func(nd *yaml.Node) {
		if nd.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(nd.Content); i += 2 {
				if nd.Content[i].Value == "for" && nd.Content[i+1].Kind == yaml.ScalarNode {
					nd.Content[i+1].Value = d
					changed++
				}
			}
		}
		for _, c := range nd.Content {
			walk(c)
		}
	}
	walk(&doc)
	if changed == 0 {
		t.Fatalf("%s: no `for:` to shorten", path)
	}
	out, err := yaml.Marshal(&doc)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "rules.yml")
	if err := os.WriteFile(dst, out, 0o644); err != nil {
		t.Fatal(err)
	}
	return dst
}

// prom is one prometheus process started by the test.
type prom struct {
	base string // http://127.0.0.1:port
	log  string // its output file
	http *http.Client
}

// startPrometheus runs prometheus on a free loopback port with a config
// that scrapes the agent at target every 250ms and evaluates rules every
// 250ms, storage in a temp dir. It is stopped by PID when the test ends.
func startPrometheus(t *testing.T, bin, target, rules string) *prom {
	t.Helper()
	dir := t.TempDir()
	cfg := fmt.Sprintf(`global:
  scrape_interval: 250ms
  scrape_timeout: 200ms
  evaluation_interval: 250ms
rule_files: [%q]
scrape_configs:
  - job_name: redhaven
    static_configs:
      - targets: [%q]
`, rules, target)
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	logPath := filepath.Join(dir, "prometheus.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config.file="+cfgPath, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=info")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		t.Fatalf("start %s: %v", bin, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); logFile.Close(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	p := &prom{base: "http://" + addr, log: logPath, http: &http.Client{Timeout: 5 * time.Second}}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := p.http.Get(p.base + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case <-done:
			t.Fatalf("prometheus exited at start; log:\n%s", p.tail())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus on %s not ready after 30s; log:\n%s", addr, p.tail())
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("prometheus log (tail):\n%s", p.tail())
		}
	})
	return p
}

func (p *prom) tail() string {
	b, _ := os.ReadFile(p.log)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// api GETs /api/v1/<path> and decodes the "data" of a success answer.
func (p *prom) api(path string, params url.Values, data any) error {
	u := p.base + "/api/v1/" + path
	if params != nil {
		u += "?" + params.Encode()
	}
	resp, err := p.http.Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	var env struct {
		Status string          `json:"status"`
		Error  string          `json:"error"`
		Data   json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(b, &env); err != nil {
		return fmt.Errorf("%s: %v: %.200s", path, err, b)
	}
	if env.Status != "success" {
		return fmt.Errorf("%s: %s: %s", path, env.Status, env.Error)
	}
	return json.Unmarshal(env.Data, data)
}

type sample struct {
	Metric map[string]string
	Value  float64
}

// query runs an instant query; scalars come back as one sample without
// labels.
func (p *prom) query(expr string) ([]sample, error) {
	var data struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	}
	if err := p.api("query", url.Values{"query": {expr}}, &data); err != nil {
		return nil, err
	}
	parse := func(v []any) (float64, error) {
		if len(v) != 2 {
			return 0, fmt.Errorf("odd value %v", v)
		}
		s, _ := v[1].(string)
		return strconv.ParseFloat(s, 64)
	}
	switch data.ResultType {
	case "vector":
		var rs []struct {
			Metric map[string]string `json:"metric"`
			Value  []any             `json:"value"`
		}
		if err := json.Unmarshal(data.Result, &rs); err != nil {
			return nil, err
		}
		out := make([]sample, 0, len(rs))
		for _, r := range rs {
			f, err := parse(r.Value)
			if err != nil {
				return nil, err
			}
			out = append(out, sample{Metric: r.Metric, Value: f})
		}
		return out, nil
	case "scalar":
		var v []any
		if err := json.Unmarshal(data.Result, &v); err != nil {
			return nil, err
		}
		f, err := parse(v)
		return []sample{{Value: f}}, err
	default:
		return nil, fmt.Errorf("result type %q", data.ResultType)
	}
}

// value is the value of a query that returns one sample, else NaN-like -1.
func (p *prom) value(expr string) float64 {
	s, err := p.query(expr)
	if err != nil || len(s) != 1 {
		return -1
	}
	return s[0].Value
}

// scalar asks again for up to 15 s: a scrape that timed out on a loaded
// machine marks the target's series stale until the next one succeeds.
func (p *prom) scalar(t *testing.T, expr string) float64 {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		s, err := p.query(expr)
		if err == nil && len(s) == 1 {
			return s[0].Value
		}
		if time.Now().After(deadline) {
			t.Fatalf("query %s = %v, %v; want one sample", expr, s, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

type alert struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	State       string            `json:"state"`
}

func (a alert) String() string {
	return fmt.Sprintf("%s(%s,addr=%s)", a.Labels["alertname"], a.State, a.Labels["addr"])
}

func (p *prom) alerts(t *testing.T) []alert {
	t.Helper()
	var data struct {
		Alerts []alert `json:"alerts"`
	}
	if err := p.api("alerts", nil, &data); err != nil {
		t.Fatalf("alerts: %v", err)
	}
	return data.Alerts
}

// lastEvaluation is the oldest last evaluation time of the rule groups;
// it fails while a rule's evaluation errs.
func (p *prom) lastEvaluation() (time.Time, error) {
	var data struct {
		Groups []struct {
			Name           string    `json:"name"`
			LastEvaluation time.Time `json:"lastEvaluation"`
			Rules          []struct {
				Name      string `json:"name"`
				Health    string `json:"health"`
				LastError string `json:"lastError"`
			} `json:"rules"`
		} `json:"groups"`
	}
	if err := p.api("rules", nil, &data); err != nil {
		return time.Time{}, err
	}
	if len(data.Groups) == 0 {
		return time.Time{}, fmt.Errorf("no rule group loaded")
	}
	var oldest time.Time
	for _, g := range data.Groups {
		for _, r := range g.Rules {
			if r.Health == "err" {
				return time.Time{}, fmt.Errorf("rule %s: %s", r.Name, r.LastError)
			}
		}
		if oldest.IsZero() || g.LastEvaluation.Before(oldest) {
			oldest = g.LastEvaluation
		}
	}
	return oldest, nil
}

func (p *prom) metricNames(t *testing.T) map[string]bool {
	t.Helper()
	var names []string
	if err := p.api("label/__name__/values", nil, &names); err != nil {
		t.Fatalf("metric names: %v", err)
	}
	out := map[string]bool{}
	for _, n := range names {
		out[n] = true
	}
	return out
}

// labelValuesRE matches Grafana's label_values(selector, label) variable
// query; the selector is PromQL.
var labelValuesRE = regexp.MustCompile(`^\s*label_values\((.*),\s*[a-zA-Z_][a-zA-Z0-9_]*\s*\)\s*$`)

// dashboardExprs returns every PromQL expression of a Grafana dashboard:
// the "expr" of each query and annotation, and the selectors of the
// label_values variable queries.
func dashboardExprs(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var exprs []string
	var walk func(v any, key string)
	walk = func(v any, key string) {
		switch x := v.(type) {
		case map[string]any:
			for k, c := range x {
				walk(c, k)
			}
		case []any:
			for _, c := range x {
				walk(c, key)
			}
		case string:
			switch key {
			case "expr":
				exprs = append(exprs, x)
			case "query", "definition":
				m := labelValuesRE.FindStringSubmatch(x)
				if m == nil {
					t.Errorf("%s: variable query %q is not label_values(selector, label)", path, x)
					return
				}
				exprs = append(exprs, m[1])
			}
		}
	}
	walk(doc, "")
	sort.Strings(exprs)
	return slices.Compact(exprs)
}

// dashboardPanelExpr returns the first query of the panel with that title.
func dashboardPanelExpr(t *testing.T, path, title string) string {
	t.Helper()
	var d struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	for _, p := range d.Panels {
		if p.Title == title && len(p.Targets) > 0 {
			return p.Targets[0].Expr
		}
	}
	t.Fatalf("%s: no panel %q with a query", path, title)
	return ""
}

// rulesExprs returns the expr of every rule in a Prometheus rules file.
func rulesExprs(t *testing.T, path string) []string {
	t.Helper()
	var f struct {
		Groups []struct {
			Rules []struct{ Expr string }
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var out []string
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			out = append(out, r.Expr)
		}
	}
	return out
}

// promqlMetricNames returns the metric names an expression selects, sorted
// and without repeats. It is a scanner, not a parser (Prometheus itself
// checks the syntax when the test runs the expression): it skips strings,
// label matchers {...}, ranges [...], numbers and durations, function and
// aggregation names (an identifier followed by "("), keywords, and the
// label lists after by/without/on/ignoring/group_left/group_right.
func promqlMetricNames(expr string) ([]string, error) {
	labelList := map[string]bool{"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true}
	keyword := map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true, "atan2": true, "inf": true, "nan": true}
	isStart := func(c byte) bool { return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
	isPart := func(c byte) bool { return isStart(c) || c >= '0' && c <= '9' }
	s := expr
	i := 0
	skipSpace := func() {
		for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r') {
			i++
		}
	}
	// skipString moves i past the quoted string that starts at i.
	skipString := func() error {
		q := s[i]
		for j := i + 1; j < len(s); j++ {
			switch {
			case s[j] == '\\' && q != '`':
				j++
			case s[j] == q:
				i = j + 1
				return nil
			}
		}
		return fmt.Errorf("unterminated string at %d", i)
	}
	// skipTo moves i past the close byte that ends the group opened at i,
	// skipping quoted strings.
	skipTo := func(close byte) error {
		open, start, depth := s[i], i, 0
		for i < len(s) {
			switch c := s[i]; {
			case c == '"' || c == '\'' || c == '`':
				if err := skipString(); err != nil {
					return err
				}
				continue
			case c == open:
				depth++
			case c == close:
				depth--
				if depth == 0 {
					i++
					return nil
				}
			}
			i++
		}
		return fmt.Errorf("%q at %d is not closed", open, start)
	}
	// grouping reports whether rest starts with the word by or without.
	grouping := func(rest string) bool {
		for _, w := range []string{"by", "without"} {
			if len(rest) >= len(w) && strings.EqualFold(rest[:len(w)], w) && (len(rest) == len(w) || !isPart(rest[len(w)])) {
				return true
			}
		}
		return false
	}
	var names []string
	parens := 0
	for i < len(s) {
		c := s[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			if err := skipString(); err != nil {
				return nil, err
			}
		case c == '{':
			if err := skipTo('}'); err != nil {
				return nil, err
			}
		case c == '[':
			if err := skipTo(']'); err != nil {
				return nil, err
			}
		case c >= '0' && c <= '9' || c == '.':
			for i < len(s) && (isPart(s[i]) || s[i] == '.') {
				i++
			}
		case isStart(c):
			j := i
			for j < len(s) && isPart(s[j]) {
				j++
			}
			word := s[i:j]
			i = j
			skipSpace()
			next := byte(0)
			if i < len(s) {
				next = s[i]
			}
			switch {
			case labelList[strings.ToLower(word)]:
				if next == '(' {
					if err := skipTo(')'); err != nil {
						return nil, err
					}
				}
			case keyword[strings.ToLower(word)], next == '(', grouping(s[i:]):
				// a keyword, a function, or an aggregation written
				// "sum by (x) (...)"
			default:
				names = append(names, word)
			}
		case c == '(':
			parens++
			i++
		case c == ')':
			parens--
			if parens < 0 {
				return nil, fmt.Errorf("unbalanced ) at %d", i)
			}
			i++
		default:
			i++
		}
	}
	if parens != 0 {
		return nil, fmt.Errorf("unbalanced parentheses in %q", expr)
	}
	sort.Strings(names)
	return slices.Compact(names), nil
}
