package webui_test

import (
	"encoding/csv"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/redhaven/redhaven/webui"
)

// The second service's Redis nodes and listeners.
const (
	cacheA = "127.0.0.1:17379"
	cacheB = "127.0.0.1:17380"
)

// twoServices is sampleSnapshot with a second service, "cache", routed
// to cacheA: the services' fields filled, the top-level ones left empty,
// as node fills them.
func twoServices() webui.Snapshot {
	snap := sampleSnapshot()
	now := snap.Time
	mymaster := webui.Service{Name: "mymaster", Ready: true, Route: snap.Route, Frontends: snap.Frontends,
		Backends: snap.Backends, Sentinels: snap.Sentinels}
	cache := webui.Service{Name: "cache", Ready: true,
		Route: webui.Route{Master: cacheA, Epoch: 3, Reason: "switch-master", Since: now.Add(-time.Hour)},
		Frontends: []webui.Frontend{
			{Name: "rw", Addr: ":6390", CurrentSessions: 7, MaxSessions: 9, TotalSessions: 70, CommandsTotal: 5000, CommandsPerSec: 42.5, Errors: 1},
		},
		Backends: []webui.Backend{
			{Addr: cacheA, Role: "master", State: webui.StateUp, IsMaster: true, LastCheck: now, Offset: 900, LinkUp: true, Sessions: 7, Commands: 5000, Admin: webui.AdminReady},
			{Addr: cacheB, Role: "replica", State: webui.StateUp, LastCheck: now, Offset: 800, LagBytes: 100, LinkUp: true, Admin: webui.AdminReady},
		},
		Sentinels: []webui.Sentinel{{Addr: "127.0.0.1:26379", Reachable: true, Master: cacheA, Epoch: 3, LastEvent: "+switch-master"}},
	}
	snap.Route, snap.Frontends, snap.Backends, snap.Sentinels = webui.Route{}, nil, nil, nil
	snap.Services = []webui.Service{mymaster, cache}
	snap.Events = append(snap.Events, webui.Event{Time: now.Add(-time.Hour), Kind: webui.EventFailover, Service: "cache", Node: "node2",
		Message: "master 127.0.0.1:17380 -> " + cacheA + " (epoch 3)", Duration: 700 * time.Millisecond})
	// The untagged failover events of sampleSnapshot are mymaster's.
	for i := range snap.Events {
		if snap.Events[i].Kind == webui.EventFailover && snap.Events[i].Service == "" {
			snap.Events[i].Service = "mymaster"
		}
	}
	return snap
}

// setReady sets one service's readiness.
func (s *testSource) setReady(service string, ready bool) {
	s.update(func(snap *webui.Snapshot) {
		for i := range snap.Services {
			if snap.Services[i].Name == service {
				snap.Services[i].Ready = ready
			}
		}
	})
}

func TestServicesPage(t *testing.T) {
	src := &testSource{snap: twoServices()}
	src.update(func(s *webui.Snapshot) {
		s.Services[1].Ready = false
		s.Services[1].Route.Contradicted = cacheA + " answers ROLE as a replica"
	})
	h := newServer(t, authConfig(), src, &testAdmin{src: src}).Handler()
	body := do(h, "GET", "/", nil, nil, &readerUser).Body.String()
	mustContain(t, "two services", body,
		`<section class="service" id="service" data-service="mymaster">`,
		`<section class="service" id="service-2" data-service="cache">`,
		`id="route-master">`+addrA+`<`, `id="route-master-2">`+cacheA+`<`, // a master card each
		`<tr class="up" data-service="mymaster">`, // the summary rows
		`<tr class="goingdown" data-service="cache">`,
		`<span class="badge goingdown">contradicted</span>`,
		`<td class="n">2 / 3</td>`, `<td class="n">2 / 2</td>`, // backends up
		`<table class="grid backends" id="backends">`, `<table class="grid backends" id="backends-2">`,
		`<tr class="up master" data-addr="`+cacheA+`">`, `<tr class="up master" data-addr="`+addrA+`">`,
		`id="route-contradicted-2">not routed here: `+cacheA+" answers ROLE as a replica",
		"2 services · 5 redis · 3 sentinels",            // the cluster card counts each Sentinel once
		`<th>service</th>`,                              // the Sentinels table names the service
		`<td class="n">43</td><td class="n">5,000</td>`, // cache's commands/s and commands
	)
	// mymaster's section comes first and holds mymaster's rows only.
	i, j := strings.Index(body, `data-service="mymaster">`), strings.Index(body, `id="service-2"`)
	if k := strings.Index(body, `data-addr="`+cacheA+`"`); i < 0 || j < 0 || k < j || strings.Index(body, `data-addr="`+addrB+`"`) > j {
		t.Errorf("sections out of order or mixed: mymaster %d, cache %d, %s row %d", i, j, cacheA, k)
	}
	if strings.Contains(body, "<form") {
		t.Error("reader sees forms")
	}
	// An admin: backend forms name their service, the failover form offers
	// both, route reset (which names no service yet) is not offered.
	body = do(h, "GET", "/", nil, nil, &adminUser).Body.String()
	mustContain(t, "admin, two services", body,
		`<input type="hidden" name="service" value="cache"><input type="hidden" name="addr" value="`+cacheB+`">`,
		`<input type="hidden" name="service" value="mymaster"><input type="hidden" name="addr" value="`+addrB+`">`,
		`<option value="mymaster">mymaster</option><option value="cache">cache</option>`)
	if strings.Contains(body, `id="route-reset"`) {
		t.Error("route reset offered with two services")
	}

	// One named service: the page as before, plus its name.
	one := twoServices()
	one.Services = one.Services[:1]
	src.update(func(s *webui.Snapshot) { *s = one })
	body = do(h, "GET", "/", nil, nil, &adminUser).Body.String()
	mustContain(t, "one service", body, `committed master · <span class="svc-name">mymaster</span>`, `id="backends"`,
		`<input type="hidden" name="service" value="mymaster">`, "3 redis · 3 sentinels")
	if strings.Contains(body, "<select name=\"service\"") || strings.Contains(body, `id="service-2"`) || strings.Contains(body, "services ·") {
		t.Error("one service shows a service choice or a second section")
	}
}

func TestServicesJSON(t *testing.T) {
	src := &testSource{snap: twoServices()}
	src.setReady("cache", false)
	h := newServer(t, openConfig(), src, nil).Handler()
	var got webui.Stats
	rec := do(h, "GET", "/api/v1/stats", nil, nil, nil)
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Services) != 2 || got.Services[0].Name != "mymaster" || got.Services[1].Name != "cache" {
		t.Fatalf("services = %+v", got.Services)
	}
	// The top level is the first service's; ready only when every service is.
	if got.Route.Master != addrA || len(got.Backends) != 3 || len(got.Frontends) != 2 || got.Ready {
		t.Errorf("top level: route %+v, %d backends, %d frontends, ready %v", got.Route, len(got.Backends), len(got.Frontends), got.Ready)
	}
	c := got.Services[1]
	want := webui.ServiceSummary{State: webui.ServiceNotReady, CurrentSessions: 7, TotalSessions: 70, CommandsTotal: 5000,
		CommandsPerSec: 42.5, Errors: 1, BackendsUp: 2, Backends: 2, Failovers: 1}
	if c.Route.Master != cacheA || c.Ready || c.Summary != want || len(c.Sentinels) != 1 {
		t.Errorf("cache = route %+v ready %v summary %+v; want summary %+v", c.Route, c.Ready, c.Summary, want)
	}
	if n := got.Services[0].Summary.Failovers; n != 2 {
		t.Errorf("mymaster failovers = %d, want its 2 tagged events", n)
	}
	// The wire names.
	var raw struct {
		Services []map[string]any `json:"services"`
	}
	_ = json.Unmarshal(rec.Body.Bytes(), &raw)
	if s := raw.Services[1]; s["name"] != "cache" || s["summary"].(map[string]any)["commands_per_sec"] != 42.5 || s["route"].(map[string]any)["master"] != cacheA {
		t.Errorf("JSON of cache: %v", s)
	}
}

func TestServicesCSV(t *testing.T) {
	h := newServer(t, openConfig(), &testSource{snap: twoServices()}, nil).Handler()
	rows, err := csv.NewReader(do(h, "GET", "/stats;csv", nil, nil, nil).Body).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	// The service column is appended: the existing ones keep their place.
	if h := rows[0]; h[len(h)-1] != "service" || h[0] != "type" || h[len(h)-2] != "last_error" {
		t.Fatalf("header = %q", h)
	}
	svc := len(rows[0]) - 1
	count := map[string]int{}
	for _, r := range rows[1:] {
		count[r[0]+"/"+r[svc]]++
		if r[0] == "route" && r[svc] == "cache" && (r[2] != cacheA || r[3] != "ready") {
			t.Errorf("cache route row = %q", r)
		}
		if r[0] == "backend" && r[1] == cacheB && r[svc] != "cache" {
			t.Errorf("row of %s names service %q", cacheB, r[svc])
		}
	}
	want := map[string]int{"route/mymaster": 1, "route/cache": 1, "frontend/mymaster": 2, "frontend/cache": 1,
		"backend/mymaster": 3, "backend/cache": 2, "sentinel/mymaster": 3, "sentinel/cache": 1, "member/": 3}
	for k, n := range want {
		if count[k] != n {
			t.Errorf("%s rows: %d, want %d (all: %v)", k, count[k], n, count)
		}
	}
	if len(count) != len(want) {
		t.Errorf("row kinds %v, want %v", count, want)
	}
}

func TestServicesMetrics(t *testing.T) {
	src := &testSource{snap: twoServices()}
	h := newServer(t, openConfig(), src, nil).Handler()
	fams := parseMetrics(t, do(h, "GET", "/metrics", nil, nil, nil).Body.String())
	for _, tt := range []struct {
		name   string
		labels []string
		want   float64
	}{
		// Both services have a listener "rw": the service label keeps them apart.
		{"redhaven_proxy_sessions_current", []string{"service=mymaster", "listener=rw"}, 412},
		{"redhaven_proxy_sessions_current", []string{"service=cache", "listener=rw"}, 7},
		{"redhaven_proxy_commands_total", []string{"service=cache", "listener=rw"}, 5000},
		{"redhaven_backend_is_master", []string{"service=cache", "addr=" + cacheA}, 1},
		{"redhaven_backend_replication_lag_bytes", []string{"service=cache", "addr=" + cacheB}, 100},
		{"redhaven_backend_up", []string{"service=mymaster", "addr=" + addrC}, 0},
		{"redhaven_sentinel_config_epoch", []string{"service=cache", "addr=127.0.0.1:26379"}, 3},
		{"redhaven_sentinel_config_epoch", []string{"service=mymaster", "addr=127.0.0.1:26379"}, 7},
		{"redhaven_route_epoch", []string{"service=mymaster"}, 7},
		{"redhaven_route_epoch", []string{"service=cache"}, 3},
		{"redhaven_route_has_master", []string{"service=cache"}, 1},
		{"redhaven_route_contradicted", []string{"service=cache"}, 0},
		{"redhaven_service_ready", []string{"service=cache"}, 1},
		{"redhaven_service_master_info", []string{"service=cache", "master_name=cache", "master_address=" + cacheA}, 1},
		{"redhaven_service_master_info", []string{"service=mymaster", "master_name=mymaster", "master_address=" + addrA}, 1},
		{"redhaven_node_ready", nil, 1},
	} {
		if got := value(t, fams, tt.name, tt.labels...); got != tt.want {
			t.Errorf("%s%v = %v, want %v", tt.name, tt.labels, got, tt.want)
		}
	}
	// Every per-service family has the label on every series.
	for _, name := range []string{"redhaven_proxy_sessions_current", "redhaven_backend_up", "redhaven_sentinel_reachable",
		"redhaven_route_epoch", "redhaven_failover_duration_seconds", "redhaven_service_ready"} {
		for _, m := range fams[name].GetMetric() {
			if !slices.ContainsFunc(m.GetLabel(), func(l *dto.LabelPair) bool { return l.GetName() == "service" && l.GetValue() != "" }) {
				t.Errorf("%s series without a service: %v", name, m.GetLabel())
			}
		}
	}
	// A failover histogram per service, from the events tagged with it.
	hists := map[string]uint64{}
	for _, m := range fams["redhaven_failover_duration_seconds"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "service" {
				hists[l.GetValue()] = m.GetHistogram().GetSampleCount()
			}
		}
	}
	if hists["mymaster"] != 2 || hists["cache"] != 1 || len(hists) != 2 {
		t.Errorf("failover counts by service = %v, want mymaster 2, cache 1", hists)
	}

	// cache loses its master: its series say so, mymaster's do not move.
	src.update(func(s *webui.Snapshot) { s.Services[1].Ready, s.Services[1].Route.Master = false, "" })
	fams = parseMetrics(t, do(h, "GET", "/metrics", nil, nil, nil).Body.String())
	for _, tt := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"redhaven_service_ready", []string{"service=cache"}, 0},
		{"redhaven_service_ready", []string{"service=mymaster"}, 1},
		{"redhaven_route_has_master", []string{"service=cache"}, 0},
		{"redhaven_node_ready", nil, 0},
	} {
		if got := value(t, fams, tt.name, tt.labels...); got != tt.want {
			t.Errorf("after cache lost its master: %s%v = %v, want %v", tt.name, tt.labels, got, tt.want)
		}
	}
	for _, m := range fams["redhaven_service_master_info"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "service" && l.GetValue() == "cache" {
				t.Errorf("master info for cache without a master: %v", m.GetLabel())
			}
		}
	}
}

func TestReadyService(t *testing.T) {
	src := &testSource{snap: twoServices()}
	h := newServer(t, authConfig(), src, nil).Handler() // open with auth too: load balancers have no credentials
	check := func(path string, want int, inBody string) {
		t.Helper()
		rec := do(h, "GET", path, nil, nil, nil)
		if rec.Code != want || rec.Header().Get("Content-Type") != "application/json" || !strings.Contains(rec.Body.String(), inBody) {
			t.Errorf("GET %s = %d %s, want %d with %q", path, rec.Code, rec.Body, want, inBody)
		}
	}
	check("/health/ready", 200, `"ok"`)
	check("/health/ready?service=mymaster", 200, `"ok"`)
	check("/health/ready?service=cache", 200, `"ok"`)
	src.setReady("cache", false)
	check("/health/ready?service=cache", 503, "not ready")
	check("/health/ready?service=mymaster", 200, `"ok"`)
	check("/health/ready", 503, "not ready") // without the parameter: every service
	check("/health/ready?service=nope", 404, `service \"nope\": not configured on node1 (services: \"mymaster\", \"cache\")`)
	check("/health/ready?service=", 400, `give one of`)

	// One service without a name (a Source of the single-service kind):
	// "" names it, any name is unknown.
	src.update(func(s *webui.Snapshot) { *s = sampleSnapshot() })
	check("/health/ready?service=", 200, `"ok"`)
	check("/health/ready?service=mymaster", 404, "not configured")
}

func TestServicesAdmin(t *testing.T) {
	src := &testSource{snap: twoServices()}
	admin := &testAdmin{src: src}
	h := newServer(t, authConfig(), src, admin).Handler()
	jsonHdr := map[string]string{"Content-Type": "application/json"}
	post := func(path, body string) (int, string) {
		t.Helper()
		rec := do(h, "POST", path, strings.NewReader(body), jsonHdr, &adminUser)
		return rec.Code, rec.Body.String()
	}
	for _, tt := range []struct {
		path, body string
		want       int
		inBody     string
	}{
		{"/api/v1/failover", `{}`, 400, `service: give one of \"mymaster\", \"cache\"`},
		{"/api/v1/failover", `{"service":"nope"}`, 404, `service \"nope\": not configured`},
		{"/api/v1/failover?service=cache", `{"service":"mymaster"}`, 400, "in the body but"},
		{"/api/v1/failover", `{"service":"cache"}`, 200, "service cache: planned failover requested"},
		{"/api/v1/failover?service=mymaster", ``, 200, "service mymaster: planned failover requested"},
		{"/api/v1/backends/" + cacheB + "/state", `{"state":"drain"}`, 400, "give one of"},
		{"/api/v1/backends/" + cacheB + "/state", `{"state":"drain","service":"mymaster"}`, 404, `not known in service \"mymaster\"`},
		{"/api/v1/backends/" + cacheB + "/state", `{"state":"drain","service":"cache"}`, 200, "service cache: backend " + cacheB + " set to drain"},
		{"/api/v1/backends/" + addrB + "/state?service=mymaster", `{"state":"maintenance"}`, 200, "backend " + addrB + " set to maintenance"},
	} {
		if code, body := post(tt.path, tt.body); code != tt.want || !strings.Contains(body, tt.inBody) {
			t.Errorf("POST %s %s = %d %s, want %d with %q", tt.path, tt.body, code, body, tt.want, tt.inBody)
		}
	}
	want := []string{"failover cache", "failover mymaster", "backend cache/" + cacheB + " drain", "backend mymaster/" + addrB + " maintenance"}
	if c := admin.Calls(); !slices.Equal(c, want) {
		t.Errorf("calls = %q, want %q", c, want)
	}
	// The drain reached cache's backend only.
	snap := src.Snapshot()
	if snap.Services[1].Backends[1].Admin != webui.AdminDrain || snap.Services[0].Backends[1].Admin != webui.AdminMaintenance {
		t.Errorf("admin states: cache %s, mymaster %s", snap.Services[1].Backends[1].Admin, snap.Services[0].Backends[1].Admin)
	}

	// The page's forms carry the service.
	token := csrfFor(t, h, adminUser)
	rec := do(h, "POST", "/admin/backend", form("csrf", token, "service", "cache", "addr", cacheA, "state", "drain"), formHdr, &adminUser)
	if rec.Code != http.StatusSeeOther {
		t.Errorf("form backend = %d %s", rec.Code, rec.Body)
	}
	rec = do(h, "POST", "/admin/failover", form("csrf", token, "service", "cache"), formHdr, &adminUser)
	if rec.Code != http.StatusSeeOther {
		t.Errorf("form failover = %d %s", rec.Code, rec.Body)
	}
	hdr := map[string]string{"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
	if rec := do(h, "POST", "/admin/failover", form("csrf", token), hdr, &adminUser); rec.Code != 400 {
		t.Errorf("form failover without a service = %d %s, want 400", rec.Code, rec.Body)
	}
	want = append(want, "backend cache/"+cacheA+" drain", "failover cache")
	if c := admin.Calls(); !slices.Equal(c, want) {
		t.Errorf("calls = %q, want %q", c, want)
	}

	// One named service: no service needed, the name is passed on.
	one := twoServices()
	one.Services = one.Services[:1]
	src.update(func(s *webui.Snapshot) { *s = one })
	if code, body := post("/api/v1/failover", `{}`); code != 200 {
		t.Errorf("failover of the only service = %d %s", code, body)
	}
	if code, body := post("/api/v1/backends/"+addrC+"/state", `{"state":"ready"}`); code != 200 {
		t.Errorf("backend of the only service = %d %s", code, body)
	}
	if code, body := post("/api/v1/failover", `{"service":"cache"}`); code != 404 {
		t.Errorf("failover of a service no longer there = %d %s", code, body)
	}
	want = append(want, "failover mymaster", "backend mymaster/"+addrC+" ready")
	if c := admin.Calls(); !slices.Equal(c, want) {
		t.Errorf("calls = %q, want %q", c, want)
	}
}

// TestServiceVIP: a service's own VIP is shown on its master card, named
// in the cluster table next to its holder, in the JSON of its service,
// and in the VIP metrics with its service label (the shared one's label
// is empty).
func TestServiceVIP(t *testing.T) {
	src := &testSource{snap: twoServices()}
	src.update(func(s *webui.Snapshot) {
		s.Services[1].VIP = &webui.VIP{Service: "cache", Mode: "netlink", Address: "10.0.0.101/24", Interface: "eth0",
			Holder: "node2", LeaseRemaining: 0.5, LeaseChanges: map[string]uint64{"grant": 1, "takeover": 0, "release": 3}}
	})
	h := newServer(t, openConfig(), src, nil).Handler()
	body := do(h, "GET", "/", nil, nil, nil).Body.String()
	mustContain(t, "service vip", body,
		`own VIP <span class="mono">10.0.0.101/24</span> on eth0 · held by <b>node2</b> · lease 0.5 s left`,
		`<span class="tag vip-tag" title="10.0.0.101/24">vip cache</span>`)
	if strings.Count(body, "own VIP") != 1 {
		t.Error("own VIP shown for a service without one")
	}
	var got webui.Stats
	if err := json.Unmarshal(do(h, "GET", "/api/v1/stats", nil, nil, nil).Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if v := got.Services[1].VIP; v == nil || v.Holder != "node2" || v.Service != "cache" || got.Services[0].VIP != nil || got.VIP.Holder != "node1" {
		t.Fatalf("JSON vips: shared %+v, services %+v %+v", got.VIP, got.Services[0].VIP, got.Services[1].VIP)
	}
	fams := parseMetrics(t, do(h, "GET", "/metrics", nil, nil, nil).Body.String())
	for _, tt := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"redhaven_vip_held", []string{"service="}, 1},
		{"redhaven_vip_held", []string{"service=cache"}, 0},
		{"redhaven_vip_lease_holder", []string{"service=", "node=node1"}, 1},
		{"redhaven_vip_lease_holder", []string{"service=cache", "node=node2"}, 1},
		{"redhaven_vip_lease_remaining_seconds", []string{"service=cache"}, 0.5},
		{"redhaven_vip_lease_changes_total", []string{"service=cache", "kind=release"}, 3},
		{"redhaven_vip_lease_changes_total", []string{"service=", "kind=takeover"}, 2},
	} {
		if v := value(t, fams, tt.name, tt.labels...); v != tt.want {
			t.Errorf("%s%v = %v, want %v", tt.name, tt.labels, v, tt.want)
		}
	}
}
