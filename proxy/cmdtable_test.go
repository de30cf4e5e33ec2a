package proxy

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/redhaven/redhaven/e2e/redistest"
	"github.com/redis/go-redis/v9"
)

// TestEveryCommandClassified: every command and subcommand that the
// redis-server of the tests lists in COMMAND DOCS has a row in the
// table (a new Redis version's commands must be classified, not
// forwarded by default without a thought).
func TestEveryCommandClassified(t *testing.T) {
	rs := redistest.StartServer(t, redistest.ServerOptions{})
	c := redis.NewClient(&redis.Options{Addr: rs.Addr, Protocol: 2})
	defer c.Close()
	docs, err := c.Do(context.Background(), "COMMAND", "DOCS").Slice()
	if err != nil {
		t.Fatalf("COMMAND DOCS: %v", err)
	}
	names := docNames(t, docs)
	if len(names) < 200 {
		t.Fatalf("COMMAND DOCS listed %d commands; parsing went wrong", len(names))
	}
	rows := map[string]cmdRow{}
	for _, r := range allCommands() {
		if _, dup := rows[r.name]; dup {
			t.Errorf("%s: two rows", r.name)
		}
		rows[r.name] = r
	}
	count := map[string]int{}
	for _, name := range names {
		r, ok := rows[name]
		if !ok {
			t.Errorf("%s (from COMMAND DOCS) has no row in the command table (cmdtable.go)", displayName(name))
			continue
		}
		switch {
		case r.deny:
			count["refused by proxy.deny_commands default"]++
		default:
			count[r.class.String()]++
		}
	}
	var summary []string
	for k, v := range count {
		summary = append(summary, fmt.Sprintf("%s %d", k, v))
	}
	sort.Strings(summary)
	t.Logf("%d commands of redis-server (COMMAND DOCS, subcommands counted one by one): %s", len(names), strings.Join(summary, ", "))
}

// docNames flattens COMMAND DOCS (RESP2: name, [key, value...]) into the
// table's names, a container replaced by its subcommands.
func docNames(t *testing.T, docs []any) []string {
	var out []string
	for i := 0; i+1 < len(docs); i += 2 {
		name := strings.ToLower(fmt.Sprint(docs[i]))
		fields, _ := docs[i+1].([]any)
		var subs []any
		for j := 0; j+1 < len(fields); j += 2 {
			if fmt.Sprint(fields[j]) == "subcommands" {
				subs, _ = fields[j+1].([]any)
			}
		}
		if len(subs) == 0 {
			out = append(out, name)
			continue
		}
		out = append(out, docNames(t, subs)...)
	}
	return out
}

// TestRereadCommandsReadOnly: every command the proxy may send twice after
// a shared connection died is one Redis flags readonly and not blocking
// (PING and ECHO: no write flag), and a shared one in the table.
func TestRereadCommandsReadOnly(t *testing.T) {
	rs := redistest.StartServer(t, redistest.ServerOptions{})
	c := redis.NewClient(&redis.Options{Addr: rs.Addr, Protocol: 2})
	defer c.Close()
	for name := range rereadCommands {
		info, err := c.Do(context.Background(), "COMMAND", "INFO", name).Slice()
		if err != nil || len(info) != 1 {
			t.Fatalf("COMMAND INFO %s: %v, %v", name, info, err)
		}
		row, ok := info[0].([]any)
		if !ok || len(row) < 3 {
			t.Fatalf("COMMAND INFO %s: %v (unknown command?)", name, info)
		}
		flags := map[string]bool{}
		for _, f := range row[2].([]any) {
			flags[fmt.Sprint(f)] = true
		}
		if flags["write"] || flags["blocking"] || (!flags["readonly"] && name != "ping" && name != "echo") {
			t.Errorf("%s may be sent twice, but its flags are %v", name, row[2])
		}
		if sp := lookupCommand([]byte(name)); sp.kind != cmdPlain || sp.own {
			t.Errorf("%s may be sent twice, but it is not a plain shared command", name)
		}
		if !rereadable(appendCommandStrings(nil, strings.ToUpper(name), "k")) {
			t.Errorf("rereadable(%s) = false", name)
		}
	}
	for _, cmd := range [][]string{{"SET", "k", "v"}, {"INCR", "k"}, {"EVAL_RO", "return 1", "0"}, {"GETDEL", "k"}, {"GETEX", "k"}} {
		if rereadable(appendCommandStrings(nil, cmd...)) {
			t.Errorf("%v would be sent twice", cmd)
		}
	}
}
