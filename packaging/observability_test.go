package packaging_test

import (
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// observabilityFiles are the Grafana dashboard and the Prometheus rules:
// path in the packages -> file in this folder.
var observabilityFiles = map[string]string{
	"/usr/share/redhaven/grafana/redhaven.json":         "grafana/redhaven.json",
	"/usr/share/redhaven/prometheus/redhaven-rules.yml": "prometheus/redhaven-rules.yml",
}

// TestObservabilityFilesInPackages checks that the .deb and the .rpm ship
// the dashboard and the alert rules, world-readable, byte for byte.
// node/prometheus_test.go runs them against a real Prometheus.
func TestObservabilityFilesInPackages(t *testing.T) {
	checkFilesInPackages(t, observabilityFiles)
}

// docFiles are the man page, the bash completion, the copyright and the
// changelog: path in the packages -> file in this folder.
var docFiles = map[string]string{
	"/usr/share/man/man1/redhaven.1":                  "man/redhaven.1",
	"/usr/share/bash-completion/completions/redhaven": "completion/redhaven.bash",
	"/usr/share/zsh/vendor-completions/_redhaven":     "completion/_redhaven",
	"/usr/share/doc/redhaven/copyright":               "copyright",
	"/usr/share/doc/redhaven/changelog":               "changelog",
}

// TestDocFilesInPackages checks that the .deb and the .rpm ship the
// documentation, world-readable, byte for byte, and that the man page and
// the copyright name what nfpm.yaml does.
func TestDocFilesInPackages(t *testing.T) {
	nfpm := readFile(t, "nfpm.yaml")
	homepage := ""
	for _, l := range strings.Split(nfpm, "\n") {
		if v, ok := strings.CutPrefix(l, "homepage: "); ok {
			homepage = strings.TrimSpace(v)
		}
	}
	if homepage == "" || !strings.Contains(readFile(t, "copyright"), "\nSource: "+homepage+"\n") {
		t.Errorf("copyright's Source is not nfpm.yaml's homepage %q", homepage)
	}
	checkFilesInPackages(t, docFiles)
}

// checkFilesInPackages checks files (path in the packages -> file here)
// in both packages: mode 0644 root/root, same bytes.
func checkFilesInPackages(t *testing.T, files map[string]string) {
	needTool(t, "dpkg-deb", "dpkg")
	p := buildPackages(t, anyBin(t))

	got := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(run(t, "dpkg-deb", "--contents", p.deb)), "\n") {
		f := strings.Fields(line)
		if len(f) < 6 {
			t.Fatalf("odd dpkg-deb --contents line %q", line)
		}
		got[strings.TrimSuffix(strings.TrimPrefix(f[len(f)-1], "."), "/")] = f[0] + " " + f[1]
	}
	root := t.TempDir()
	run(t, "dpkg-deb", "--extract", p.deb, root)
	for inPkg, src := range files {
		if got[inPkg] != "-rw-r--r-- root/root" {
			t.Errorf("deb: %s is %q, want -rw-r--r-- root/root", inPkg, got[inPkg])
			continue
		}
		if readFile(t, filepath.Join(root, inPkg)) != readFile(t, src) {
			t.Errorf("deb: %s differs from %s", inPkg, src)
		}
	}

	t.Run("rpm", func(t *testing.T) {
		needTool(t, "rpm", "rpm")
		rpmFiles := map[string]string{}
		for _, line := range strings.Split(strings.TrimSpace(run(t, "rpm", "-qp", "--qf",
			`[%{FILENAMES}|%{FILEMODES:perms}|%{FILEUSERNAME}|%{FILEGROUPNAME}\n]`, p.rpm)), "\n") {
			path, rest, _ := strings.Cut(line, "|")
			rpmFiles[path] = rest
		}
		for inPkg := range files {
			if rpmFiles[inPkg] != "-rw-r--r--|root|root" {
				t.Errorf("rpm: %s is %q, want -rw-r--r--|root|root", inPkg, rpmFiles[inPkg])
			}
		}
	})
}

// TestGrafanaDashboardShape checks what Grafana's import needs and what the
// README promises: a ${DS_PROMETHEUS} input used by every panel and query,
// a recent schema, core panel types only, panels inside the 24-column grid
// with unique ids, and a panel for each topic of the dashboard.
func TestGrafanaDashboardShape(t *testing.T) {
	var d struct {
		Inputs []struct {
			Name, Type, PluginID string
		} `json:"__inputs"`
		SchemaVersion int    `json:"schemaVersion"`
		UID           string `json:"uid"`
		Title         string `json:"title"`
		Panels        []struct {
			ID         int             `json:"id"`
			Type       string          `json:"type"`
			Title      string          `json:"title"`
			Datasource json.RawMessage `json:"datasource"`
			GridPos    struct{ X, Y, W, H int }
			Targets    []struct {
				Datasource json.RawMessage `json:"datasource"`
				Expr       string          `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal([]byte(readFile(t, "grafana/redhaven.json")), &d); err != nil {
		t.Fatalf("grafana/redhaven.json: %v", err)
	}
	if len(d.Inputs) != 1 || d.Inputs[0].Name != "DS_PROMETHEUS" || d.Inputs[0].Type != "datasource" || d.Inputs[0].PluginID != "prometheus" {
		t.Errorf("__inputs = %+v, want one prometheus datasource input DS_PROMETHEUS", d.Inputs)
	}
	if d.SchemaVersion < 39 {
		t.Errorf("schemaVersion = %d, want >= 39 (Grafana 10.3+)", d.SchemaVersion)
	}
	if d.UID == "" || d.Title == "" {
		t.Errorf("uid %q, title %q: want both", d.UID, d.Title)
	}
	core := []string{"row", "stat", "timeseries", "state-timeline", "bargauge", "table", "gauge", "text"}
	const ds = `{"type":"prometheus","uid":"${DS_PROMETHEUS}"}`
	ids := map[int]bool{}
	var titles []string
	for _, p := range d.Panels {
		titles = append(titles, p.Title)
		if ids[p.ID] {
			t.Errorf("panel id %d used twice", p.ID)
		}
		ids[p.ID] = true
		if !slices.Contains(core, p.Type) {
			t.Errorf("panel %q: type %q is not a core panel", p.Title, p.Type)
		}
		if g := p.GridPos; g.W <= 0 || g.H <= 0 || g.X < 0 || g.X+g.W > 24 {
			t.Errorf("panel %q: gridPos %+v outside the 24-column grid", p.Title, g)
		}
		if p.Type == "row" {
			continue
		}
		if compact(t, p.Datasource) != ds {
			t.Errorf("panel %q: datasource %s, want %s", p.Title, p.Datasource, ds)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			if compact(t, tg.Datasource) != ds || strings.TrimSpace(tg.Expr) == "" {
				t.Errorf("panel %q: query %q with datasource %s", p.Title, tg.Expr, tg.Datasource)
			}
		}
	}
	all := strings.ToLower(strings.Join(titles, "\n"))
	for _, topic := range []string{"committed master", "route epoch", "failover", "fenced", "vip", "sessions", "migrations", "backend up", "replication lag", "commands/s", "errors/s"} {
		if !strings.Contains(all, topic) {
			t.Errorf("no panel title mentions %q", topic)
		}
	}
}

func compact(t *testing.T, raw json.RawMessage) string {
	t.Helper()
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return string(raw)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// TestAlertRulesShape checks that every alert rule tells the operator what
// happened and what to do, has a `for:` and a severity, and that the
// alerts the README lists exist. node/prometheus_test.go loads the file
// into a real Prometheus and runs `promtool check rules` on it.
func TestAlertRulesShape(t *testing.T) {
	var f struct {
		Groups []struct {
			Name  string
			Rules []struct {
				Alert       string
				Expr        string
				For         string
				Labels      map[string]string
				Annotations map[string]string
			}
		}
	}
	dec := yaml.NewDecoder(strings.NewReader(readFile(t, "prometheus/redhaven-rules.yml")))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		t.Fatalf("prometheus/redhaven-rules.yml: %v", err)
	}
	var alerts []string
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			alerts = append(alerts, r.Alert)
			if r.Alert == "" || r.Expr == "" || r.For == "" {
				t.Errorf("group %s: rule %q: want alert, expr and for", g.Name, r.Alert)
			}
			if s := r.Labels["severity"]; s != "critical" && s != "warning" {
				t.Errorf("%s: severity %q, want critical or warning", r.Alert, s)
			}
			if len(r.Annotations["summary"]) < 20 || len(r.Annotations["description"]) < 80 {
				t.Errorf("%s: want a summary and a description that says what to do, got %q", r.Alert, r.Annotations)
			}
		}
	}
	for _, want := range []string{"RedhavenAgentDown", "RedhavenVIPHoldersNotOne", "RedhavenRouteContradicted", "RedhavenNoRaftLeader",
		"RedhavenBackendDown", "RedhavenReplicationLagHigh", "RedhavenProxyRefusingClients"} {
		if !slices.Contains(alerts, want) {
			t.Errorf("alert %s missing (have %v)", want, alerts)
		}
	}
}
