package node

import (
	"os"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"
)

// baseYAML is a valid config without services: (single node, so no key
// is needed).
const baseYAML = `
node_name: n1
data_dir: /tmp/rh
cluster:
  bootstrap_expect: 1
redis:
  sentinels: ["127.0.0.1:26379", "127.0.0.1:26380"]
  username: shared-user
  password: shared-secret
  max_replica_lag: 1000
#REDIS
proxy:
  password: shared-client
  hold_timeout: 3s
  max_clients: 500
  prefer_replica: "10.0.0.1:6379"
#PROXY
`

// withSections returns baseYAML with extra lines in its redis and proxy
// sections (indented by the caller), then rest.
func withSections(redis, proxy, rest string) string {
	return strings.NewReplacer("#REDIS\n", redis, "#PROXY\n", proxy).Replace(baseYAML) + rest
}

// TestServiceConfigs: the shorthand is one service of today's keys; a
// service entry's keys override the shared sections, the rest inherit.
func TestServiceConfigs(t *testing.T) {
	type want struct {
		name, listen, ro, password, user, redisPw, prefer string
		sentinels, nodes                                  []string
		lag                                               int64
		maxClients                                        int
		hold                                              time.Duration
	}
	shared := want{"", ":6380", "", "shared-client", "shared-user", "shared-secret", "10.0.0.1:6379",
		[]string{"127.0.0.1:26379", "127.0.0.1:26380"}, nil, 1000, 500, 3 * time.Second}
	with := func(f func(*want)) want { w := shared; f(&w); return w }
	tests := []struct {
		name string
		yaml string
		want want
	}{
		{"shorthand", withSections("  master_name: shorty\n", "  listen: \":7000\"\n  readonly_listen: \":7001\"\n", ""),
			with(func(w *want) { w.name, w.listen, w.ro = "shorty", ":7000", ":7001" })},
		{"shorthand defaults", baseYAML, with(func(w *want) { w.name = "mymaster" })},
		{"service inherits", baseYAML + "services:\n  - name: cache\n",
			with(func(w *want) { w.name = "cache" })},
		{"service overrides every key", baseYAML + `services:
  - name: cache
    listen: "127.0.0.1:6390"
    readonly_listen: ":6391"
    password: ""
    redis_username: cacheuser
    redis_password: cachepw
    sentinels: ["127.0.0.1:36379"]
    nodes: ["127.0.0.1:6379"]
    prefer_replica: ""
    max_replica_lag: 0
    max_clients: 7
    hold_timeout: 250ms
`, want{"cache", "127.0.0.1:6390", ":6391", "", "cacheuser", "cachepw", "",
			[]string{"127.0.0.1:36379"}, []string{"127.0.0.1:6379"}, 0, 7, 250 * time.Millisecond}},
		{"no sentinels for one service", baseYAML + "services:\n  - name: plain\n    sentinels: []\n    nodes: [\"127.0.0.1:6379\"]\n",
			with(func(w *want) { w.name, w.sentinels, w.nodes = "plain", nil, []string{"127.0.0.1:6379"} })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, _, err := Check(writeConfig(t, tt.yaml), nil, nil)
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			ss := cfg.ServiceConfigs()
			if len(ss) != 1 {
				t.Fatalf("%d services, want 1", len(ss))
			}
			s := ss[0]
			got := want{s.Name, s.Proxy.Listen, s.Proxy.ReadonlyListen, s.Proxy.Password, s.Redis.Username, s.Redis.Password,
				s.Proxy.PreferReplica, s.Redis.Sentinels, s.Redis.Nodes, s.Redis.MaxReplicaLag, s.Proxy.MaxClients, s.Proxy.HoldTimeout}
			if len(got.sentinels) == 0 {
				got.sentinels = nil
			}
			if len(got.nodes) == 0 {
				got.nodes = nil
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
			if s.Redis.MasterName != s.Name || s.Proxy.BackendUsername != s.Redis.Username || s.Proxy.BackendPassword != s.Redis.Password {
				t.Errorf("master name %q / backend auth %q:%q do not follow the service", s.Redis.MasterName, s.Proxy.BackendUsername, s.Proxy.BackendPassword)
			}
			// node runs cfg.Redis and cfg.Proxy: they are the service's.
			if cfg.Redis.MasterName != s.Name || cfg.Proxy.Listen != s.Proxy.Listen || cfg.Proxy.HoldTimeout != s.Proxy.HoldTimeout ||
				cfg.Redis.Password != s.Redis.Password || cfg.Proxy.Password != s.Proxy.Password || !reflect.DeepEqual(cfg.Redis.Sentinels, s.Redis.Sentinels) {
				t.Errorf("redis/proxy sections are not the service's: %+v %+v", cfg.Redis, cfg.Proxy)
			}
			// Applying again changes nothing, and the result is valid.
			if again := cfg.ApplyServices(); !reflect.DeepEqual(again, cfg) {
				t.Errorf("ApplyServices is not idempotent")
			}
			if err := cfg.Validate(); err != nil {
				t.Errorf("Validate of the applied config: %v", err)
			}
		})
	}
}

// TestServicesListInherits: with several entries each gets its own keys
// and the shared rest, and the config is valid.
func TestServicesListInherits(t *testing.T) {
	cfg, err := LoadConfig(writeConfig(t, baseYAML+`services:
  - name: a
    listen: ":7000"
  - name: b
    listen: ":7100"
    sentinels: ["127.0.0.1:1"]
    max_clients: 9
`), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ss := cfg.ServiceConfigs()
	if len(ss) != 2 || ss[0].Name != "a" || ss[1].Name != "b" {
		t.Fatalf("services %+v", ss)
	}
	if ss[0].Proxy.Listen != ":7000" || ss[0].Proxy.MaxClients != 500 || len(ss[0].Redis.Sentinels) != 2 {
		t.Errorf("a: %+v %+v", ss[0].Proxy, ss[0].Redis)
	}
	if ss[1].Proxy.Listen != ":7100" || ss[1].Proxy.MaxClients != 9 || !reflect.DeepEqual(ss[1].Redis.Sentinels, []string{"127.0.0.1:1"}) {
		t.Errorf("b: %+v %+v", ss[1].Proxy, ss[1].Redis)
	}
	// One service's list is its own: changing it leaves the other's alone.
	ss[0].Redis.Sentinels[0] = "changed:1"
	if cfg.Redis.Sentinels[0] == "changed:1" || cfg.ServiceConfigs()[0].Redis.Sentinels[0] == "changed:1" {
		t.Error("ServiceConfigs shares the sentinels slice")
	}
	// Several services are not applied to the sections.
	if cfg.Redis.MasterName != "mymaster" || cfg.Proxy.Listen != ":6380" {
		t.Errorf("sections changed: %q %q", cfg.Redis.MasterName, cfg.Proxy.Listen)
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("Validate of two services: %v", err)
	}
}

// TestTwoServicesValidate: two services on their own ports, one with its
// own Sentinels, one on the same port of another address, pass
// check-config, which lists both.
func TestTwoServicesValidate(t *testing.T) {
	cfg, _, err := Check(writeConfig(t, baseYAML+`services:
  - name: a
    listen: "127.0.0.1:7000"
  - name: b
    listen: "127.0.0.2:7000"
    sentinels: ["127.0.0.1:26400"]
`), nil, nil)
	if err != nil {
		t.Fatalf("Check of two services: %v", err)
	}
	for _, want := range []string{`"a": read-write on 127.0.0.1:7000`, `"b": read-write on 127.0.0.2:7000, no read-only listener; 1 Sentinel(s): 127.0.0.1:26400`} {
		if summary := cfg.Summary(); !strings.Contains(summary, want) {
			t.Errorf("check-config summary %q lacks %q", summary, want)
		}
	}
}

// TestServicesErrors: every problem of a services: list is reported at
// once, each naming services[i].key.
func TestServicesErrors(t *testing.T) {
	tests := []struct {
		name  string
		yaml  string // after baseYAML; "redis:\n" and "proxy:\n" blocks go into its sections
		env   []string
		wants []string // each a whole error line
	}{
		{"missing name", "services:\n  - listen: \":7000\"\n",
			nil, []string{"services[0].name: required (Sentinel's master name)"}},
		{"bad name", "services:\n  - name: \"my master\"\n",
			nil, []string{`services[0].name: "my master" has characters other than letters, digits, '.', '_' and '-'`}},
		{"duplicate names", "services:\n  - name: a\n    listen: \":7000\"\n  - name: a\n    listen: \":7100\"\n",
			nil, []string{`services[1].name: "a" is also services[0].name; every service needs its own name`}},
		{"unknown key", "services:\n  - name: a\n    lisen: \":7000\"\n",
			nil, []string{`config file PATH: unknown key "services[0].lisen" (did you mean "services[0].listen"?)`}},
		{"unknown key far from any", "services:\n  - name: a\n    tls_mode: {}\n",
			nil, []string{`config file PATH: unknown key "services[0].tls_mode"`}},
		{"bare number duration", "services:\n  - name: a\n    hold_timeout: 5\n",
			nil, []string{"services[0].hold_timeout: got 5; want a duration with a unit, such as 500ms, 5s or 2m (a bare number has no unit)"}},
		{"not a number", "services:\n  - name: a\n    max_clients: many\n",
			nil, []string{`services[0].max_clients: got "many"; want a whole number`}},
		{"list for a string", "services:\n  - name: a\n    listen: [\":1\"]\n",
			nil, []string{`services[0].listen: got [:1]; want a single value, not a list or a section`}},
		{"not a list", "services: cache\n",
			nil, []string{`services: got "cache"; want a list of entries with their own keys (see the shipped redhaven.yaml)`}},
		{"entry not a map", "services:\n  - cache\n",
			nil, []string{`services: got [cache]; want a list of entries with their own keys (see the shipped redhaven.yaml)`}},
		{"value validators", "services:\n  - name: a\n    max_clients: 0\n    hold_timeout: -1s\n    max_replica_lag: -1\n    sentinels: [\"nohost\"]\n    listen: \"7000\"\n",
			nil, []string{"services[0].max_clients: must be at least 1, got 0",
				"services[0].hold_timeout: must not be negative, got -1s",
				"services[0].max_replica_lag: must not be negative, got -1",
				`services[0].sentinels[0]: bad address "nohost": want host:port`,
				`services[0].listen: bad address "7000": want host:port or :port`}},
		{"bad port", "services:\n  - name: a\n    readonly_listen: \":99999\"\n",
			nil, []string{`services[0].readonly_listen: got ":99999"; want host:port with a port from 1 to 65535`}},
		{"no sentinel and no node", "services:\n  - name: a\n    sentinels: []\n",
			nil, []string{"services[0].sentinels: set at least one sentinel (or redis.nodes to run without Sentinel)"}},
		{"inherited bad value named once by its shared key", "services:\n  - name: a\n    listen: \":7000\"\n  - name: b\n    listen: \":7100\"\nredis:\n  nodes: [\"nohost\"]\n",
			nil, []string{`redis.nodes[0]: bad address "nohost": want host:port`}},
		{"listener clash, wildcard and 0.0.0.0", "services:\n  - name: a\n    listen: \":7000\"\n  - name: b\n    listen: \"0.0.0.0:7000\"\n",
			nil, []string{`services[0].listen and services[1].listen: both listen on port 7000 (":7000", "0.0.0.0:7000"); give each its own port`}},
		{"inherited listen clashes", "services:\n  - name: a\n  - name: b\n",
			nil, []string{`services[0].listen and services[1].listen: both listen on port 6380 (":6380", ":6380"); give each its own port`}},
		{"read-only listener against another's", "services:\n  - name: a\n    listen: \"127.0.0.1:7000\"\n    readonly_listen: \":7001\"\n  - name: b\n    listen: \"127.0.0.2:7001\"\n",
			nil, []string{`services[0].readonly_listen and services[1].listen: both listen on port 7001 (":7001", "127.0.0.2:7001"); give each its own port`}},
		{"clash with http and raft", "services:\n  - name: a\n    listen: \":8404\"\n    readonly_listen: \"127.0.0.1:7947\"\n",
			nil, []string{`services[0].listen and http.listen: both listen on port 8404 (":8404", ":8404"); give each its own port`,
				`services[0].readonly_listen and cluster.raft_bind: both listen on port 7947 ("127.0.0.1:7947", ":7947"); give each its own port`}},
		{"shorthand keys with services", "services:\n  - name: a\n    listen: \":7000\"\nredis:\n  master_name: other\nproxy:\n  listen: \":7100\"\n  readonly_listen: \":7101\"\n",
			nil, []string{`redis.master_name: set ("other") together with services: move it into a service entry as its name`,
				`proxy.listen: set (":7100") together with services: move it into a service entry as its listen`,
				`proxy.readonly_listen: set (":7101") together with services: move it into a service entry as its readonly_listen`}},
		{"shorthand key from the environment", "services:\n  - name: a\n",
			[]string{"REDHAVEN_PROXY__LISTEN=:7100"}, []string{`proxy.listen: set (":7100") together with services: move it into a service entry as its listen`}},
		{"services from the environment", "",
			[]string{"REDHAVEN_SERVICES=a"}, []string{`services (environment REDHAVEN_SERVICES): got "a"; want a list of entries with their own keys (see the shipped redhaven.yaml)`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			redis, proxy, rest := "", "", tt.yaml
			if a, b, ok := strings.Cut(rest, "\nredis:\n"); ok {
				redis, rest = b, a+"\n"
				if x, y, ok := strings.Cut(redis, "proxy:\n"); ok {
					redis, proxy = x, y
				}
			}
			path := writeConfig(t, withSections(redis, proxy, rest))
			_, _, err := Check(path, tt.env, nil)
			if err == nil {
				t.Fatalf("no error; want %q", tt.wants)
			}
			got := strings.Split(strings.ReplaceAll(err.Error(), path, "PATH"), "\n")
			want := append([]string(nil), tt.wants...)
			sort.Strings(got)
			sort.Strings(want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("errors:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(tt.wants, "\n  "))
			}
		})
	}
}

// TestServicesSummary: check-config lists every service it understood,
// with auth on or off and never a password.
func TestServicesSummary(t *testing.T) {
	cfg, _, err := Check(writeConfig(t, baseYAML+`services:
  - name: cache
    listen: "127.0.0.1:6390"
    readonly_listen: ":6391"
    redis_password: cache-secret
    sentinels: ["127.0.0.1:36379"]
`), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	sum := cfg.Summary()
	t.Logf("summary:\n%s", sum)
	for _, want := range []string{
		"services: 1, from services:",
		`"cache": read-write on 127.0.0.1:6390, read-only on :6391; 1 Sentinel(s): 127.0.0.1:36379; client AUTH on, Redis auth on`,
	} {
		if !strings.Contains(sum, want) {
			t.Errorf("summary lacks %q", want)
		}
	}
	for _, secret := range []string{"cache-secret", "shared-secret", "shared-client"} {
		if strings.Contains(sum, secret) {
			t.Errorf("summary shows a password (%q)", secret)
		}
	}
	// The shorthand is listed as one service too.
	cfg, _, err = Check(writeConfig(t, goodYAML), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if sum := cfg.Summary(); !strings.Contains(sum, `"mymaster": read-write on 127.0.0.1:6380, no read-only listener; 2 Sentinel(s): 127.0.0.1:26379, 127.0.0.1:26380; client AUTH off, Redis auth off`) ||
		!strings.Contains(sum, "services: 1, from the shorthand keys") {
		t.Errorf("shorthand summary:\n%s", sum)
	}
}

// TestShippedServicesExample: the commented services: example of the
// shipped file, uncommented, is a valid configuration with every key of a
// service entry.
func TestShippedServicesExample(t *testing.T) {
	text, err := os.ReadFile(shippedConfig)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(text), "\n")
	var block []string
	for i, l := range lines {
		if l == "# services:" {
			for _, m := range lines[i:] {
				if !strings.HasPrefix(m, "#") {
					break
				}
				block = append(block, strings.TrimPrefix(m, "# "))
			}
			break
		}
	}
	if len(block) < 2 {
		t.Fatalf("%s has no commented services: example", shippedConfig)
	}
	example := strings.Join(block, "\n")
	for key := range serviceEntryTypes() {
		if !strings.Contains(example, " "+key+":") {
			t.Errorf("the example lacks %s", key)
		}
	}
	body := "node_name: n1\ndata_dir: /tmp/rh\ncluster:\n  bootstrap_expect: 1\n" + example + "\n"
	cfg, _, err := Check(writeConfig(t, body), nil, nil)
	if err != nil {
		t.Fatalf("the example is not valid: %v\n%s", err, body)
	}
	if s := cfg.ServiceConfigs(); len(s) != 1 || s[0].Name != "mymaster" || s[0].Proxy.ReadonlyListen != ":6381" {
		t.Errorf("example understood as %+v", s)
	}
}

// TestServicesOwnSentinelsOnly: with services:, the shared sections need
// no Sentinel when every service names its own.
func TestServicesOwnSentinelsOnly(t *testing.T) {
	body := "node_name: n1\ndata_dir: /tmp/rh\ncluster:\n  bootstrap_expect: 1\nredis:\n  sentinels: []\nservices:\n  - name: a\n    sentinels: [\"127.0.0.1:26379\"]\n"
	cfg, _, err := Check(writeConfig(t, body), nil, nil)
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if s := cfg.ServiceConfigs()[0]; len(s.Redis.Sentinels) != 1 {
		t.Errorf("sentinels %v", s.Redis.Sentinels)
	}
	// Without them, the shared key is named.
	body = strings.Replace(body, "    sentinels: [\"127.0.0.1:26379\"]\n", "", 1)
	_, _, err = Check(writeConfig(t, body), nil, nil)
	if err == nil || err.Error() != "redis.sentinels: set at least one sentinel (or redis.nodes to run without Sentinel)" {
		t.Errorf("got %v", err)
	}
}

// TestServicesWarnings: a warning about a service's setting names the
// service's key.
func TestServicesWarnings(t *testing.T) {
	_, warns, err := Check(writeConfig(t, baseYAML+"services:\n  - name: a\n"), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := `proxy.prefer_replica is set ("10.0.0.1:6379") but services[0].readonly_listen is empty: there are no replica reads to prefer it for`; len(warns) != 1 || warns[0] != want {
		t.Errorf("warnings %q, want %q", warns, want)
	}
	_, warns, err = Check(writeConfig(t, baseYAML+"services:\n  - name: a\n    prefer_replica: \"10.0.0.2:6379\"\n"), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(warns) != 1 || !strings.HasPrefix(warns[0], `services[0].prefer_replica is set ("10.0.0.2:6379")`) {
		t.Errorf("warnings %q", warns)
	}
	_, warns, err = Check(writeConfig(t, baseYAML+"services:\n  - name: a\n    readonly_listen: \":6381\"\n"), nil, nil)
	if err != nil || len(warns) != 0 {
		t.Errorf("with a read-only listener: %v %q", err, warns)
	}
}
