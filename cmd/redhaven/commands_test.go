package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestCLIUsage: one usage style for every command. A bad flag or a wrong
// number of arguments prints the error and the usage on stderr and exits
// 2; --help prints the command's help on stdout and exits 0 (keygen and
// version too, instead of doing their job).
func TestCLIUsage(t *testing.T) {
	tests := []struct {
		args     []string
		code     int
		out, err []string
	}{
		{[]string{"status", "--json"}, 2, nil, []string{"redhaven status: unknown flag: --json", "Usage: redhaven status [flags]", "--addr"}},
		{[]string{"members", "-x"}, 2, nil, []string{"redhaven members: unknown shorthand flag: 'x'", "Usage: redhaven members"}},
		{[]string{"failover", "--nope"}, 2, nil, []string{"redhaven failover: unknown flag: --nope", "Usage: redhaven failover"}},
		{[]string{"status", "extra-arg"}, 2, nil, []string{`redhaven status: unexpected argument "extra-arg"`}},
		{[]string{"leave", "now"}, 2, nil, []string{`unexpected argument "now"`}},
		{[]string{"keygen", "x"}, 2, nil, []string{`redhaven keygen: unexpected argument "x"`}},
		{[]string{"check-config", "x.yaml"}, 2, nil, []string{`unexpected argument "x.yaml"`, "-c, --config"}},
		{[]string{"keygen", "--help"}, 0, []string{"Usage: redhaven keygen\n", "Examples:", "Exit status:"}, nil},
		{[]string{"version", "--help"}, 0, []string{"Usage: redhaven version\n"}, nil},
		{[]string{"join", "--help"}, 0, []string{"Usage: redhaven join [flags] ADDR...", "gossip address", "redhaven join 10.0.0.11:7946"}, nil},
		{[]string{"members", "remove", "-h"}, 0, []string{"Usage: redhaven members remove [flags] NAME"}, nil},
		{[]string{"help", "failover"}, 0, []string{"Usage: redhaven failover [flags]", "planned failover"}, nil},
		{[]string{"help", "nope"}, 2, nil, []string{`unknown command "nope"`}},
		{[]string{"agent", "--help"}, 0, []string{"Usage: redhaven agent [flags]", "--proxy-hold-timeout"}, nil},
		{[]string{"--help"}, 0, []string{"members remove", "Exit status: 0 success"}, nil},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(tt.args, &out, &errb)
			if code != tt.code {
				t.Errorf("exit %d, want %d; stdout %q stderr %q", code, tt.code, out.String(), errb.String())
			}
			for _, w := range tt.out {
				if !strings.Contains(out.String(), w) {
					t.Errorf("stdout lacks %q:\n%s", w, out.String())
				}
			}
			for _, w := range tt.err {
				if !strings.Contains(errb.String(), w) {
					t.Errorf("stderr lacks %q:\n%s", w, errb.String())
				}
			}
			if tt.code == 0 && errb.Len() > 0 {
				t.Errorf("stderr not empty: %q", errb.String())
			}
			if tt.code == 2 && out.Len() > 0 {
				t.Errorf("usage error wrote to stdout: %q", out.String())
			}
		})
	}
}

// TestEveryCommandHasHelp: each entry of the table has what --help and the
// man page need.
func TestEveryCommandHasHelp(t *testing.T) {
	for _, c := range commands {
		if c.summary == "" || len(c.examples) == 0 {
			t.Errorf("%s: needs a summary and at least one example", c.name)
		}
		if (c.minArgs > 0 || c.maxArgs != 0) && c.args == "" {
			t.Errorf("%s: takes arguments but does not name them (args)", c.name)
		}
		for _, e := range c.examples {
			if !strings.Contains(e, "redhaven "+c.name) {
				t.Errorf("%s: example %q does not run it", c.name, e)
			}
		}
	}
}

func TestVersion(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"version"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, w := range []string{"redhaven dev", "commit:", "built:", "go:         go1."} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("version output lacks %q:\n%s", w, out.String())
		}
	}
}

// TestStatusWithoutLeader: an agent of a cluster that has not formed
// answers with no leader and no route; status says so in words and exits 3.
func TestStatusWithoutLeader(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"node":"n1","redhaven_version":"dev","ready":false,"leader":false,"route":{"master":"","epoch":0,"reason":""},
			"members":[{"name":"n1","addr":"127.0.0.1:7946","gossip_state":"alive","raft_role":"","last_contact_seconds":0}],"vip":{"mode":"none"}}`))
	}))
	defer srv.Close()
	var out, errb bytes.Buffer
	code := run([]string{"status", "--addr", srv.URL}, &out, &errb)
	if code != exitNotRouting {
		t.Errorf("exit %d, want %d", code, exitNotRouting)
	}
	for _, w := range []string{"leader:   none: no Raft leader", "master:   none committed yet", "routing:  NO"} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("status lacks %q:\n%s", w, out.String())
		}
	}
	if strings.Contains(out.String(), "epoch 0") {
		t.Errorf("status shows a meaningless epoch:\n%s", out.String())
	}
}

// TestStatusServices: status names the only service, and with several
// lists each with its master and whether this node routes it.
func TestStatusServices(t *testing.T) {
	body := `{"node":"n1","redhaven_version":"dev","ready":true,"leader":true,"route":{"master":"10.0.0.11:6379","epoch":7,"reason":"switch-master"},
		"members":[{"name":"n1","is_leader":true}],"vip":{"mode":"none"},
		"services":[{"name":"mymaster","ready":true,"route":{"master":"10.0.0.11:6379","epoch":7,"reason":"switch-master"}}]}`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(body))
	}))
	defer srv.Close()
	status := func() (int, string) {
		var out, errb bytes.Buffer
		code := run([]string{"status", "--addr", srv.URL}, &out, &errb)
		return code, out.String()
	}
	code, out := status()
	for _, w := range []string{"service:  mymaster\n", "master:   10.0.0.11:6379 (epoch 7, switch-master)", "routing:  yes"} {
		if code != exitOK || !strings.Contains(out, w) {
			t.Errorf("one service: exit %d, status lacks %q:\n%s", code, w, out)
		}
	}
	body = `{"node":"n1","redhaven_version":"dev","ready":false,"leader":true,"route":{"master":"10.0.0.11:6379","epoch":7},
		"members":[{"name":"n1","is_leader":true}],"vip":{"mode":"none"},
		"services":[{"name":"mymaster","ready":true,"route":{"master":"10.0.0.11:6379","epoch":7}},
		            {"name":"cache","ready":false,"route":{"master":"","epoch":0}}]}`
	code, out = status()
	for _, w := range []string{"service mymaster:  10.0.0.11:6379 (epoch 7); routing yes", "service cache:     none committed yet; routing NO", "routing:           NO: not every service is routed here"} {
		if !strings.Contains(out, w) {
			t.Errorf("two services: status lacks %q:\n%s", w, out)
		}
	}
	if code != exitNotRouting || strings.Contains(out, "\nmaster:") {
		t.Errorf("two services: exit %d (want %d), or a single master line:\n%s", code, exitNotRouting, out)
	}
	// A service with its own VIP: a line for it after the shared one.
	body = `{"node":"n1","redhaven_version":"dev","ready":true,"leader":true,"route":{"master":"10.0.0.11:6379","epoch":7},
		"members":[{"name":"n1","is_leader":true}],"vip":{"mode":"netlink","address":"10.0.0.100/24","holder":"n1"},
		"services":[{"name":"mymaster","ready":true,"route":{"master":"10.0.0.11:6379","epoch":7}},
		            {"name":"cache","ready":true,"route":{"master":"10.0.0.12:6379","epoch":1},
		             "vip":{"service":"cache","mode":"netlink","address":"10.0.0.101/24","holder":"n2"}}]}`
	_, out = status()
	for _, w := range []string{"vip:               10.0.0.100/24 held by n1\n", "vip of cache:      10.0.0.101/24 held by n2\n"} {
		if !strings.Contains(out, w) {
			t.Errorf("service VIP: status lacks %q:\n%s", w, out)
		}
	}
	if strings.Contains(out, "vip of mymaster") {
		t.Errorf("a line for the shared VIP's service:\n%s", out)
	}
}
