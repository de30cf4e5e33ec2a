package webui_test

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/redhaven/redhaven/webui"
)

func TestPage(t *testing.T) {
	src := &testSource{snap: sampleSnapshot()}
	h := newServer(t, openConfig(), src, nil).Handler()

	rec := do(h, "GET", "/", nil, nil, nil)
	if rec.Code != 200 || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/html") {
		t.Fatalf("GET / = %d %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	body := rec.Body.String()
	mustContain(t, "page", body,
		`<tr class="up master" data-addr="`+addrA+`">`, // the committed master row
		`<tr class="down" data-addr="`+addrC+`">`,
		`id="route-master">`+addrA+`<`,
		"epoch <b>7</b>",
		`<meta http-equiv="refresh" content="10;url=/?refresh=10">`, // the default
		"98,412,377", // frontend commands
		"connection refused",
		"node3", "10.0.0.100/24", "switch-master",
		"lease 0.8 s left", // the VIP lease as this node sees it
		"1,840 ms",         // failover duration
		"read-only (no http.auth)",
		`href="/assets/style.css?v=`,
	)
	if strings.Contains(body, "<form") {
		t.Error("read-only page has forms")
	}
	if csp := rec.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("CSP = %q", csp)
	}
	// Events newest first.
	if i, j := strings.Index(body, "unreachable</td>"), strings.Index(body, "node3 joined"); i < 0 || j < 0 || i > j {
		t.Errorf("events not newest first (%d, %d)", i, j)
	}

	// User-chosen refresh, and pause.
	body = do(h, "GET", "/?refresh=5", nil, nil, nil).Body.String()
	mustContain(t, "refresh=5", body, `content="5;url=/?refresh=5"`, `<a href="/?refresh=5" class="on"`)
	body = do(h, "GET", "/?refresh=0", nil, nil, nil).Body.String()
	if strings.Contains(body, `http-equiv="refresh"`) {
		t.Error("paused page still refreshes")
	}
	mustContain(t, "paused", body, "paused")

	// The page follows the source.
	src.setMaster(addrB, 8)
	body = do(h, "GET", "/", nil, nil, nil).Body.String()
	mustContain(t, "after failover", body, `<tr class="up master" data-addr="`+addrB+`">`, "epoch <b>8</b>")
	if strings.Contains(body, `id="route-contradicted"`) {
		t.Error("page flags a contradiction that the snapshot does not have")
	}

	// A committed master that this node's watcher contradicts.
	src.update(func(s *webui.Snapshot) {
		s.Route.Contradicted, s.Route.EpochAhead = "10.9.9.9:6379 is not a redis node this watcher knows", true
	})
	body = do(h, "GET", "/", nil, nil, nil).Body.String()
	mustContain(t, "contradicted", body, `id="route-contradicted"`, "not routed here: 10.9.9.9:6379 is not a redis node this watcher knows", "epoch above every sentinel")
	src.update(func(s *webui.Snapshot) { s.Route.Contradicted, s.Route.EpochAhead = "", false })

	// No master at all.
	src.update(func(s *webui.Snapshot) { s.Route.Master = ""; s.Backends = nil })
	body = do(h, "GET", "/", nil, nil, nil).Body.String()
	mustContain(t, "no master", body, "nomaster", "no redis nodes known yet")

	// Values are escaped.
	src.update(func(s *webui.Snapshot) {
		s.Events = append(s.Events, webui.Event{Time: t0, Kind: "admin", Message: `<script>alert(1)</script>`})
	})
	body = do(h, "GET", "/", nil, nil, nil).Body.String()
	if strings.Contains(body, "<script>") || !strings.Contains(body, "&lt;script&gt;alert(1)&lt;/script&gt;") {
		t.Error("event message not escaped")
	}

	// Only the root is the page.
	if rec := do(h, "GET", "/nope", nil, nil, nil); rec.Code != 404 {
		t.Errorf("GET /nope = %d", rec.Code)
	}
	css := do(h, "GET", "/assets/style.css", nil, nil, nil)
	if css.Code != 200 || !strings.HasPrefix(css.Header().Get("Content-Type"), "text/css") || !strings.Contains(css.Body.String(), "tr.master") {
		t.Errorf("GET style.css = %d %q", css.Code, css.Header().Get("Content-Type"))
	}
}

func TestStatsJSON(t *testing.T) {
	src := &testSource{snap: sampleSnapshot()}
	h := newServer(t, openConfig(), src, nil).Handler()
	rec := do(h, "GET", "/api/v1/stats", nil, nil, nil)
	if rec.Code != 200 || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("GET /api/v1/stats = %d %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	var m map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	if m["version"] != 1.0 || m["node"] != "node1" || m["redhaven_version"] != "0.3.0" || m["ready"] != true || m["leader"] != true {
		t.Errorf("top level: %v", m)
	}
	field := func(path ...any) any {
		var v any = m
		for _, p := range path {
			switch k := p.(type) {
			case string:
				v = v.(map[string]any)[k]
			case int:
				v = v.([]any)[k]
			}
		}
		return v
	}
	for _, tt := range []struct {
		path []any
		want any
	}{
		{[]any{"route", "master"}, addrA},
		{[]any{"route", "epoch"}, 7.0},
		{[]any{"route", "since"}, "2026-11-22T04:26:48Z"},
		{[]any{"frontends", 0, "commands_total"}, 98412377.0},
		{[]any{"frontends", 0, "commands_per_sec"}, 18234.5},
		{[]any{"frontends", 1, "refused"}, 3.0},
		{[]any{"backends", 0, "is_master"}, true},
		{[]any{"backends", 0, "check_duration_seconds"}, 0.000412},
		{[]any{"backends", 1, "lag_bytes"}, 872.0},
		{[]any{"backends", 2, "state"}, "down"},
		{[]any{"backends", 2, "downtime_seconds"}, 194.0},
		{[]any{"backends", 2, "last_error"}, "dial tcp 127.0.0.1:16381: connect: connection refused"},
		{[]any{"sentinels", 2, "reachable"}, false},
		{[]any{"sentinels", 0, "last_event"}, "+switch-master"},
		{[]any{"members", 1, "last_contact_seconds"}, 0.042},
		{[]any{"members", 0, "is_leader"}, true},
		{[]any{"members", 0, "gossip_state"}, "alive"},
		{[]any{"vip", "held_here"}, true},
		{[]any{"vip", "address"}, "10.0.0.100/24"},
		{[]any{"vip", "holder"}, "node1"},
		{[]any{"vip", "lease_remaining_seconds"}, 0.75},
		{[]any{"vip", "lease_changes", "takeover"}, 2.0},
		{[]any{"events", 2, "duration_seconds"}, 1.84},
		{[]any{"events", 2, "kind"}, "failover"},
		{[]any{"failovers", "count"}, 0.0},
		{[]any{"failovers", "buckets", 9}, 0.0},
		{[]any{"failovers", "bucket_bounds_seconds", 9}, 60.0},
	} {
		if got := field(tt.path...); got != tt.want {
			t.Errorf("%v = %v (%T), want %v", tt.path, got, got, tt.want)
		}
	}
	// Go field names never leak: everything is snake_case.
	if strings.Contains(rec.Body.String(), `"CheckDuration"`) || strings.Contains(rec.Body.String(), `"IsMaster"`) {
		t.Error("Go field names in JSON")
	}
	// Clients (the CLI) decode it back into the same values.
	var back webui.Stats
	if err := json.Unmarshal(rec.Body.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	want := sampleSnapshot()
	want.Failovers.Buckets = make([]uint64, len(webui.FailoverBuckets)) // always encoded
	// A Source that fills only the top-level fields describes one service,
	// without a name, summed up.
	wantSummary := webui.ServiceSummary{State: webui.ServiceReady, CurrentSessions: 412 + 96, TotalSessions: 182231 + 5120,
		CommandsTotal: 98412377 + 4410021, CommandsPerSec: 18234.5 + 812.25, BytesIn: 9_812_345_678 + 412_345_678,
		BytesOut: 23_456_789_012 + 3_456_789_012, Errors: 17, Refused: 3, BackendsUp: 2, Backends: 3, Failovers: 2}
	want.Services = []webui.Service{{Ready: true, Route: want.Route, Frontends: want.Frontends, Backends: want.Backends,
		Sentinels: want.Sentinels, Failovers: want.Failovers, Summary: wantSummary}}
	if back.Version != webui.APIVersion || !reflect.DeepEqual(back.Snapshot, want) {
		t.Errorf("round trip differs:\n got %+v\nwant %+v", back.Snapshot, want)
	}
}

func TestStatsCSV(t *testing.T) {
	src := &testSource{snap: sampleSnapshot()}
	h := newServer(t, openConfig(), src, nil).Handler()
	for _, path := range []string{"/stats;csv", "/stats.csv"} {
		rec := do(h, "GET", path, nil, nil, nil)
		if rec.Code != 200 || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/csv") {
			t.Fatalf("GET %s = %d %q", path, rec.Code, rec.Header().Get("Content-Type"))
		}
		rows, err := csv.NewReader(rec.Body).ReadAll()
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if !slices.Equal(rows[0], webui.CSVHeader) || rows[0][0] != "type" {
			t.Fatalf("%s header = %q", path, rows[0])
		}
		col := map[string]int{}
		for i, c := range rows[0] {
			col[c] = i
		}
		types := map[string]int{}
		byName := map[string][]string{}
		for _, r := range rows[1:] {
			types[r[col["type"]]]++
			byName[r[col["type"]]+"/"+r[col["name"]]] = r
		}
		if !reflect.DeepEqual(types, map[string]int{"route": 1, "frontend": 2, "backend": 3, "sentinel": 3, "member": 3}) {
			t.Errorf("%s row types = %v", path, types)
		}
		checks := []struct{ row, col, want string }{
			{"route/node1", "master", addrA},
			{"route/node1", "epoch", "7"},
			{"frontend/rw", "cmd_tot", "98412377"},
			{"frontend/rw", "scur", "412"},
			{"frontend/ro", "refused", "3"},
			{"backend/" + addrA, "is_master", "true"},
			{"backend/" + addrA, "status", "up"},
			{"backend/" + addrB, "lag_bytes", "872"},
			{"backend/" + addrC, "status", "down"},
			{"backend/" + addrC, "downtime_seconds", "194"},
			{"sentinel/127.0.0.1:26381", "status", "down"},
			{"member/node1", "is_leader", "true"},
			{"member/node3", "status", "suspect"},
		}
		for _, c := range checks {
			r := byName[c.row]
			if r == nil {
				t.Errorf("%s: no row %s", path, c.row)
				continue
			}
			if got := r[col[c.col]]; got != c.want {
				t.Errorf("%s: %s %s = %q, want %q", path, c.row, c.col, got, c.want)
			}
		}
	}
}

func TestHealth(t *testing.T) {
	src := &testSource{snap: sampleSnapshot()}
	// Health stays open with auth configured: load balancers have no
	// credentials.
	h := newServer(t, authConfig(), src, nil).Handler()
	check := func(path string, want int) {
		t.Helper()
		rec := do(h, "GET", path, nil, nil, nil)
		if rec.Code != want || rec.Header().Get("Content-Type") != "application/json" {
			t.Errorf("GET %s = %d %q, want %d", path, rec.Code, rec.Header().Get("Content-Type"), want)
		}
		var body struct{ Status string }
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body.Status == "" {
			t.Errorf("GET %s body %q: %v", path, rec.Body, err)
		}
	}
	check("/health/live", 200)
	check("/health/ready", 200)
	check("/health/leader", 200)
	src.update(func(s *webui.Snapshot) { s.Ready = false })
	check("/health/ready", 503)
	check("/health/leader", 200)
	src.update(func(s *webui.Snapshot) { s.Leader = false })
	check("/health/leader", 503)
	check("/health/live", 200)
	src.update(func(s *webui.Snapshot) { s.Ready, s.Leader = true, true })
	check("/health/ready", 200)
	check("/health/leader", 200)
}

func TestReadAuth(t *testing.T) {
	src := &testSource{snap: sampleSnapshot()}
	h := newServer(t, authConfig(), src, &testAdmin{}).Handler()
	wrong := user{"alice", "nope", ""}
	ghost := user{"ghost", "alice-secret", ""}
	for i, path := range []string{"/", "/api/v1/stats", "/stats;csv", "/metrics", "/assets/style.css"} {
		for j, tt := range []struct {
			name string
			u    *user
			want int
		}{{"none", nil, 401}, {"wrong password", &wrong, 401}, {"unknown user", &ghost, 401}, {"reader", &readerUser, 200}, {"admin", &adminUser, 200}} {
			// Each from its own address: wrong passwords are limited per
			// address (TestPasswordFlood).
			req := httptest.NewRequest("GET", path, nil)
			req.RemoteAddr = fmt.Sprintf("192.0.2.%d:1234", 10*i+j+1)
			if tt.u != nil {
				req.SetBasicAuth(tt.u.name, tt.u.pw)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.want {
				t.Errorf("GET %s as %s = %d, want %d", path, tt.name, rec.Code, tt.want)
			}
			if tt.want == 401 && !strings.HasPrefix(rec.Header().Get("WWW-Authenticate"), "Basic ") {
				t.Errorf("GET %s as %s: WWW-Authenticate = %q", path, tt.name, rec.Header().Get("WWW-Authenticate"))
			}
		}
	}
	// A reader sees the page without forms; an admin with forms.
	body := do(h, "GET", "/", nil, nil, &readerUser).Body.String()
	if strings.Contains(body, "<form") || !strings.Contains(body, "bob") {
		t.Error("reader page: forms shown or user missing")
	}
	body = do(h, "GET", "/", nil, nil, &adminUser).Body.String()
	mustContain(t, "admin page", body, `action="/admin/backend"`, `action="/admin/failover"`, `action="/admin/transfer-leadership"`, `name="csrf"`)
}

var csrfRe = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrfFor reads the token from u's page.
func csrfFor(t *testing.T, h http.Handler, u user) string {
	t.Helper()
	m := csrfRe.FindStringSubmatch(do(h, "GET", "/", nil, nil, &u).Body.String())
	if m == nil {
		t.Fatalf("no csrf token on %s's page", u.name)
	}
	return m[1]
}

func form(kv ...string) *strings.Reader {
	v := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Set(kv[i], kv[i+1])
	}
	return strings.NewReader(v.Encode())
}

var formHdr = map[string]string{"Content-Type": "application/x-www-form-urlencoded"}

func TestAdminForms(t *testing.T) {
	src := &testSource{snap: sampleSnapshot()}
	admin := &testAdmin{src: src}
	h := newServer(t, authConfig(), src, admin).Handler()
	token := csrfFor(t, h, adminUser)

	t.Run("auth and csrf", func(t *testing.T) {
		for _, tt := range []struct {
			name string
			u    *user
			csrf string
			want int
		}{
			{"no credentials", nil, token, 401},
			{"wrong password", &user{"alice", "x", ""}, token, 401},
			{"read role", &readerUser, token, 403},
			{"no token", &adminUser, "", 403},
			{"bad token", &adminUser, "AAAA" + token[4:], 403},
		} {
			rec := do(h, "POST", "/admin/failover", form("csrf", tt.csrf), formHdr, tt.u)
			if rec.Code != tt.want {
				t.Errorf("%s: %d, want %d (%s)", tt.name, rec.Code, tt.want, rec.Body)
			}
			if tt.want == 401 && rec.Header().Get("WWW-Authenticate") == "" {
				t.Errorf("%s: no WWW-Authenticate", tt.name)
			}
		}
		if c := admin.Calls(); len(c) != 0 {
			t.Fatalf("admin called despite rejections: %q", c)
		}
	})

	t.Run("backend maintenance", func(t *testing.T) {
		rec := do(h, "POST", "/admin/backend", form("csrf", token, "addr", addrB, "state", "maintenance", "refresh", "0"), formHdr, &adminUser)
		if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/?refresh=0" {
			t.Fatalf("POST = %d Location %q: %s", rec.Code, rec.Header().Get("Location"), rec.Body)
		}
		if c := admin.Calls(); !slices.Equal(c, []string{"backend " + addrB + " maintenance"}) {
			t.Errorf("calls = %q", c)
		}
		// The flash shows once on the page it redirects to.
		cookies := rec.Result().Cookies()
		if len(cookies) != 1 {
			t.Fatalf("cookies = %v", cookies)
		}
		req := map[string]string{"Cookie": cookies[0].Name + "=" + cookies[0].Value}
		page := do(h, "GET", "/?refresh=0", nil, req, &adminUser)
		mustContain(t, "flash page", page.Body.String(), `class="flash ok"`, "backend "+addrB+" set to maintenance",
			`<tr class="maint" data-addr="`+addrB+`">`)
		if sc := page.Header().Get("Set-Cookie"); !strings.Contains(sc, "Max-Age=0") {
			t.Errorf("flash not cleared: %q", sc)
		}
	})

	t.Run("json reply", func(t *testing.T) {
		hdr := map[string]string{"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
		rec := do(h, "POST", "/admin/transfer-leadership", form("csrf", token, "node", "node2"), hdr, &adminUser)
		var res struct {
			OK      bool
			Message string
		}
		if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &res) != nil || !res.OK || !strings.Contains(res.Message, "node2") {
			t.Errorf("transfer = %d %s", rec.Code, rec.Body)
		}
		if c := admin.Calls(); c[len(c)-1] != "transfer node2" {
			t.Errorf("calls = %q", c)
		}
	})

	t.Run("bad input", func(t *testing.T) {
		hdr := map[string]string{"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
		n := len(admin.Calls())
		for _, tt := range []struct {
			path string
			body *strings.Reader
			want int
		}{
			{"/admin/backend", form("csrf", token, "addr", addrA, "state", "off"), 400},
			{"/admin/backend", form("csrf", token, "addr", "10.9.9.9:1", "state", "drain"), 404},
			{"/admin/transfer-leadership", form("csrf", token, "node", "node9"), 404},
		} {
			if rec := do(h, "POST", tt.path, tt.body, hdr, &adminUser); rec.Code != tt.want {
				t.Errorf("%s = %d, want %d: %s", tt.path, rec.Code, tt.want, rec.Body)
			}
		}
		if len(admin.Calls()) != n {
			t.Errorf("admin called for bad input: %q", admin.Calls()[n:])
		}
	})

	t.Run("admin error in flash", func(t *testing.T) {
		admin.mu.Lock()
		admin.err = errors.New("not the raft leader")
		admin.mu.Unlock()
		defer func() { admin.mu.Lock(); admin.err = nil; admin.mu.Unlock() }()
		rec := do(h, "POST", "/admin/failover", form("csrf", token), formHdr, &adminUser)
		if rec.Code != http.StatusSeeOther {
			t.Fatalf("POST = %d", rec.Code)
		}
		c := rec.Result().Cookies()[0]
		page := do(h, "GET", "/", nil, map[string]string{"Cookie": c.Name + "=" + c.Value}, &adminUser).Body.String()
		mustContain(t, "error flash", page, `class="flash err"`, "request failover: not the raft leader")
	})

	t.Run("token is per user", func(t *testing.T) {
		cfg := authConfig()
		cfg.Auth = append(cfg.Auth, webui.User{Name: "carol", PasswordHash: hashes()["alice"], Role: webui.RoleAdmin})
		h2 := newServer(t, cfg, src, admin).Handler()
		carol := user{"carol", adminUser.pw, webui.RoleAdmin}
		aliceToken := csrfFor(t, h2, adminUser)
		if rec := do(h2, "POST", "/admin/failover", form("csrf", aliceToken), formHdr, &carol); rec.Code != 403 {
			t.Errorf("alice's token for carol = %d, want 403", rec.Code)
		}
		// And per process: the other server's token is no good here.
		if rec := do(h2, "POST", "/admin/failover", form("csrf", token), formHdr, &adminUser); rec.Code != 403 {
			t.Errorf("other server's token = %d, want 403", rec.Code)
		}
	})
}

func TestReadOnlyServers(t *testing.T) {
	src := &testSource{snap: sampleSnapshot()}
	// No auth configured: every action is refused, even with an Admin.
	admin := &testAdmin{}
	open := newServer(t, openConfig(), src, admin).Handler()
	for _, path := range []string{"/admin/backend", "/admin/failover", "/admin/transfer-leadership"} {
		if rec := do(open, "POST", path, form("addr", addrA, "state", "drain"), formHdr, nil); rec.Code != 403 {
			t.Errorf("open %s = %d, want 403", path, rec.Code)
		}
	}
	json := map[string]string{"Content-Type": "application/json"}
	if rec := do(open, "POST", "/api/v1/failover", strings.NewReader("{}"), json, &adminUser); rec.Code != 403 {
		t.Errorf("open api failover = %d, want 403", rec.Code)
	}
	// Auth configured but no Admin (node gave none): page without forms,
	// actions refused.
	noAdmin := newServer(t, authConfig(), src, nil).Handler()
	if body := do(noAdmin, "GET", "/", nil, nil, &adminUser).Body.String(); strings.Contains(body, "<form") {
		t.Error("forms without an Admin")
	}
	if rec := do(noAdmin, "POST", "/api/v1/failover", strings.NewReader("{}"), json, &adminUser); rec.Code != 403 {
		t.Errorf("no-admin api failover = %d, want 403", rec.Code)
	}
	if c := admin.Calls(); len(c) != 0 {
		t.Errorf("calls = %q", c)
	}
}

func TestAdminAPI(t *testing.T) {
	src := &testSource{snap: sampleSnapshot()}
	admin := &testAdmin{src: src}
	h := newServer(t, authConfig(), src, admin).Handler()
	jsonHdr := map[string]string{"Content-Type": "application/json"}
	type res struct {
		OK      bool   `json:"ok"`
		Message string `json:"message"`
		Error   string `json:"error"`
	}
	post := func(path, body string, hdr map[string]string, u *user) (int, res) {
		t.Helper()
		rec := do(h, "POST", path, strings.NewReader(body), hdr, u)
		var r res
		if ct := rec.Header().Get("Content-Type"); rec.Code != 401 && ct != "application/json" {
			t.Errorf("%s: content type %q", path, ct)
		}
		_ = json.Unmarshal(rec.Body.Bytes(), &r)
		return rec.Code, r
	}

	if code, _ := post("/api/v1/failover", "", jsonHdr, nil); code != 401 {
		t.Errorf("no credentials = %d", code)
	}
	if code, r := post("/api/v1/failover", "", jsonHdr, &readerUser); code != 403 || r.Error == "" {
		t.Errorf("reader = %d %+v", code, r)
	}
	// Not JSON: a cross-site form could send this; refused without a token.
	if code, _ := post("/api/v1/failover", "", map[string]string{"Content-Type": "text/plain"}, &adminUser); code != 415 {
		t.Errorf("text/plain = %d, want 415", code)
	}
	if code, _ := post("/api/v1/failover", "", formHdr, &adminUser); code != 415 {
		t.Errorf("form content type = %d, want 415", code)
	}
	if c := admin.Calls(); len(c) != 0 {
		t.Fatalf("calls after rejections: %q", c)
	}
	if code, r := post("/api/v1/failover", "", jsonHdr, &adminUser); code != 200 || !r.OK {
		t.Errorf("failover = %d %+v", code, r)
	}
	if code, r := post("/api/v1/backends/"+addrC+"/state", `{"state":"drain"}`, map[string]string{"Content-Type": "application/json; charset=utf-8"}, &adminUser); code != 200 || !r.OK {
		t.Errorf("backend drain = %d %+v", code, r)
	}
	if code, _ := post("/api/v1/backends/"+url.PathEscape(addrC)+"/state", `{"state":"ready"}`, jsonHdr, &adminUser); code != 200 {
		t.Errorf("escaped addr = %d", code)
	}
	if code, r := post("/api/v1/backends/"+addrC+"/state", `{"state":"sleep"}`, jsonHdr, &adminUser); code != 400 || !strings.Contains(r.Error, `"sleep"`) {
		t.Errorf("bad state = %d %+v", code, r)
	}
	if code, _ := post("/api/v1/backends/"+addrC+"/state", `{"state":`, jsonHdr, &adminUser); code != 400 {
		t.Errorf("bad json = %d", code)
	}
	if code, _ := post("/api/v1/transfer-leadership", `{"node":""}`, jsonHdr, &adminUser); code != 200 {
		t.Errorf("transfer to any = %d", code)
	}
	if code, _ := post("/api/v1/transfer-leadership", `{"node":"node7"}`, jsonHdr, &adminUser); code != 404 {
		t.Errorf("transfer to unknown = %d", code)
	}
	want := []string{"failover", "backend " + addrC + " drain", "backend " + addrC + " ready", "transfer "}
	if c := admin.Calls(); !slices.Equal(c, want) {
		t.Errorf("calls = %q, want %q", c, want)
	}
	// GET is not an action.
	if rec := do(h, "GET", "/api/v1/failover", nil, nil, &adminUser); rec.Code != 405 {
		t.Errorf("GET /api/v1/failover = %d, want 405", rec.Code)
	}
}
