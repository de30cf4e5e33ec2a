package node

import (
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"regexp"
	"sort"
	"strings"
)

// Reload (SIGHUP, systemctl reload): the config is read again; what can
// change in the running process changes there, anything else is applied
// by a hand-over restart (clients keep their connections), and the log
// names the keys that caused it.

// LiveKeys are the config keys a reload applies without a restart.
var LiveKeys = map[string]bool{
	"log.level": true, // cmd/redhaven sets the logger's level
	// ApplyLive:
	"proxy.hold_timeout":        true,
	"proxy.max_clients":         true,
	"proxy.prefer_replica":      true,
	"proxy.client_output_limit": true,
	"proxy.auth_timeout":        true,
	"proxy.client_idle_timeout": true,
	"proxy.max_clients_per_ip":  true,
	"redis.max_replica_lag":     true,
	"http.auth":                 true,
}

// ApplyLive applies the live keys of the node's parts from cfg (a valid
// config; log.level is the caller's, whose logger it is).
func (n *Node) ApplyLive(cfg Config) {
	byName := map[string]ServiceConfig{}
	for _, sc := range cfg.ServiceConfigs() {
		byName[sc.Name] = sc
	}
	for _, s := range n.services {
		sc, ok := byName[s.cfg.Name]
		if !ok {
			continue // a removed service: the reload restarts the agent
		}
		s.proxy.SetLive(sc.Proxy.Live())
		s.maxReplicaLag.Store(sc.Redis.MaxReplicaLag)
		s.watcher.SetMaxReplicaLag(sc.Redis.MaxReplicaLag)
	}
	n.web.SetUsers(cfg.HTTP.Auth)
}

// ChangedKeys lists the keys (koanf paths, e.g. "proxy.hold_timeout")
// whose values differ between a and b, sorted. Values are never returned:
// some are secrets.
func ChangedKeys(a, b Config) []string {
	var out []string
	diffValues(reflect.ValueOf(a), reflect.ValueOf(b), "", &out)
	sort.Strings(out)
	return out
}

func diffValues(a, b reflect.Value, path string, out *[]string) {
	if a.Kind() == reflect.Struct {
		t := a.Type()
		for i := range t.NumField() {
			f := t.Field(i)
			tag := strings.Split(f.Tag.Get("koanf"), ",")[0]
			if tag == "-" || !f.IsExported() {
				continue
			}
			if tag == "" {
				tag = strings.ToLower(f.Name)
			}
			key := tag
			if path != "" {
				key = path + "." + tag
			}
			diffValues(a.Field(i), b.Field(i), key, out)
		}
		return
	}
	if a.Type() == reflect.TypeOf([]ServiceEntry(nil)) && a.Len() == b.Len() {
		for i := range a.Len() { // services[1].hold_timeout, applied live as proxy.hold_timeout
			diffValues(a.Index(i), b.Index(i), fmt.Sprintf("%s[%d]", path, i), out)
		}
		return
	}
	if !reflect.DeepEqual(a.Interface(), b.Interface()) {
		*out = append(*out, path)
	}
}

// serviceKey matches the entry part of a service key ("services[1].").
var serviceKey = regexp.MustCompile(`^services\[\d+\]\.`)

// SplitReload splits changed keys into those applied live and those that
// need a restart.
func SplitReload(changed []string) (live, restart []string) {
	for _, k := range changed {
		if LiveKeys[k] || serviceKey.MatchString(k) && LiveKeys[serviceKeys[serviceKey.ReplaceAllString(k, "")]] {
			live = append(live, k)
		} else {
			restart = append(restart, k)
		}
	}
	return live, restart
}

// NewLeveledLogger is NewLogger with a level that can change while the
// agent runs (log.level on reload).
func NewLeveledLogger(c LogConfig, w io.Writer) (*slog.Logger, *slog.LevelVar) {
	lv := new(slog.LevelVar)
	lv.Set(ParseLevel(c.Level))
	opts := &slog.HandlerOptions{Level: lv}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts)), lv
	}
	return slog.New(slog.NewTextHandler(w, opts)), lv
}

// ParseLevel reads log.level (validated by Config.Validate).
func ParseLevel(s string) slog.Level {
	var level slog.Level
	_ = level.UnmarshalText([]byte(s))
	return level
}
