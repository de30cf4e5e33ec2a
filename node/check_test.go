package node

import (
	"strings"
	"testing"
)

// TestCheckEveryError: one file with many problems gets every one
// reported, each naming its key, the value and what is expected, in
// words without Go internals.
func TestCheckEveryError(t *testing.T) {
	body := `node_name: n1
data_dir: /tmp/rh
redis:
  sentinels: ["127.0.0.1:26379"]
  check_interval: soon
  max_replica_lag: lots
proxy:
  listen: "127.0.0.1:99999"
  hold_timeout: 5
  max_clients: many
  multiplex: perhaps
  readonly_listen: ":8404"
http:
  listen: ":8404"
cluster:
  bootstrap_expect: 1
  bind: ":7946"
  raft_bind: "127.0.0.1:7946"
  join_list: []
`
	_, _, err := Check(writeConfig(t, body), nil, nil)
	if err == nil {
		t.Fatal("no error")
	}
	msg := err.Error()
	t.Logf("errors:\n%s", msg)
	for _, want := range []string{
		`redis.check_interval: got "soon"; want a duration with a unit`,
		`redis.max_replica_lag: got "lots"; want a whole number`,
		`proxy.hold_timeout: got 5; want a duration with a unit, such as 500ms, 5s or 2m (a bare number has no unit)`,
		`proxy.max_clients: got "many"; want a whole number`,
		`proxy.multiplex: got "perhaps"; want true or false`,
		`proxy.listen: got "127.0.0.1:99999"; want host:port with a port from 1 to 65535`,
		`proxy.readonly_listen and http.listen: both listen on port 8404`,
		`cluster.bind and cluster.raft_bind: both listen on port 7946`,
		`unknown key "cluster.join_list" (did you mean "cluster.join"?)`,
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("missing %q", want)
		}
	}
	for _, internal := range []string{"strconv", "ParseInt", "invalid syntax", "mapstructure", "decoding failed"} {
		if strings.Contains(msg, internal) {
			t.Errorf("error shows Go internals (%q)", internal)
		}
	}
	if n := len(strings.Split(msg, "\n")); n != 9 {
		t.Errorf("%d error lines, want 9 (one per problem)", n)
	}
}

func TestCheckEnvAndFlagsNamed(t *testing.T) {
	_, _, err := Check(writeConfig(t, goodYAML), []string{"REDHAVEN_PROXY__HOLD_TIMEOUT=5"}, nil)
	if err == nil || !strings.Contains(err.Error(), `proxy.hold_timeout (environment REDHAVEN_PROXY__HOLD_TIMEOUT): got "5"; want a duration`) {
		t.Fatalf("got %v", err)
	}
	// 0 needs no unit.
	if _, _, err := Check(writeConfig(t, goodYAML), []string{"REDHAVEN_HTTP__REFRESH=0"}, nil); err != nil {
		t.Fatalf("refresh 0: %v", err)
	}
}

func TestCheckYAMLLine(t *testing.T) {
	for _, tt := range []struct{ body, want string }{
		{"node_name: n1\n- a\n", "line 2: "},
		{"proxy:\n  listen: \":6380\"\n hold_timeout: 5s\n", "line 3: "},
		{"node_name: n1\nproxy: x: y\n", "line 2: "},
		{"redis:\n  sentinels: [\n    \"a:1\",\n    \"b:2\"]\nproxy:\n\tlisten: x\n", "line 6: "},
	} {
		_, _, err := Check(writeConfig(t, tt.body), nil, nil)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: got %v, want %q", tt.body, err, tt.want)
		}
	}
}

func TestCheckWarningsAndSummary(t *testing.T) {
	body := goodYAML + "vip:\n  mode: none\n  address: 10.0.0.100/24\n  interface: eth0\n"
	cfg, warns, err := Check(writeConfig(t, body), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(warns) != 2 || !strings.Contains(warns[0], "vip.address is set") || !strings.Contains(warns[0], "vip.mode is none") {
		t.Errorf("warnings %q", warns)
	}
	sum := cfg.Summary()
	t.Logf("summary:\n%s", sum)
	for _, want := range []string{"read-write on 127.0.0.1:6380", "2 Sentinel(s)", "once 3 nodes have joined", "vip:      none", "encrypted with the cluster key"} {
		if !strings.Contains(sum, want) {
			t.Errorf("summary lacks %q", want)
		}
	}
	// With the VIP on and a join list, the summary says so.
	body = strings.Replace(goodYAML, "cluster:\n", "cluster:\n  join: [\"10.0.0.2:7946\"]\n  bootstrap_expect: 0\n", 1) +
		"vip:\n  address: 10.0.0.100/24\n  interface: eth0\n"
	cfg, warns, err = Check(writeConfig(t, body), nil, nil)
	if err != nil || len(warns) != 0 {
		t.Fatalf("err %v, warnings %q", err, warns)
	}
	sum = cfg.Summary()
	for _, want := range []string{"joins 10.0.0.2:7946", "waits to be added", "10.0.0.100/24 on eth0, held by the node with the committed VIP lease"} {
		if !strings.Contains(sum, want) {
			t.Errorf("summary lacks %q:\n%s", want, sum)
		}
	}
}
