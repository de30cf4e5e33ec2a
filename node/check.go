package node

// Config checking in an operator's words: every problem at once, each
// naming the key, the value and what is expected; warnings for settings
// that do nothing; a summary of what the agent will do.

import (
	"errors"
	"fmt"
	"math"
	"net"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/v2"
	"github.com/spf13/pflag"

	"github.com/redhaven/redhaven/vip"
	"github.com/redhaven/redhaven/webui"
)

// ConfigErrors is every problem found in a configuration, one error per
// key. LoadConfig returns it when the file was read and parsed: the
// Config it returns then has the bad keys at their defaults, so Validate
// can still report the problems of the other keys.
type ConfigErrors []error

func (e ConfigErrors) Error() string {
	lines := make([]string, len(e))
	for i, err := range e {
		lines[i] = err.Error()
	}
	return strings.Join(lines, "\n")
}

func (e ConfigErrors) Unwrap() []error { return e }

// flattenErrors splits errors.Join trees into their leaves.
func flattenErrors(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flattenErrors(e)...)
		}
		return out
	}
	return []error{err}
}

// Check loads the configuration as the agent does and returns every
// problem at once (unknown keys, wrong types and values), or, when it is
// valid, the warnings about settings that do nothing.
func Check(path string, environ []string, fs *pflag.FlagSet) (Config, []string, error) {
	cfg, err := LoadConfig(path, environ, fs)
	var errs ConfigErrors
	if err != nil && !errors.As(err, &errs) {
		return cfg, nil, err // file missing or not YAML: nothing else to check
	}
	all := append(errs, flattenErrors(cfg.Validate())...)
	errs = nil
	seen := map[string]bool{}
	for _, e := range all {
		if !seen[e.Error()] { // node_name and data_dir are checked by node and cluster
			seen[e.Error()] = true
			errs = append(errs, e)
		}
	}
	if len(errs) > 0 {
		return cfg, nil, errs
	}
	return cfg, cfg.Warnings(), nil
}

var durationType = reflect.TypeOf(time.Duration(0))

// keyTypes maps every dotted key of a config struct to its Go type.
func keyTypes(t reflect.Type, prefix string, out map[string]reflect.Type) map[string]reflect.Type {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("koanf")
		if tag == "" || tag == "-" {
			continue
		}
		if f.Type.Kind() == reflect.Struct {
			keyTypes(f.Type, prefix+tag+".", out)
			continue
		}
		out[prefix+tag] = f.Type
	}
	return out
}

const durationHint = "a duration with a unit, such as 500ms, 5s or 2m"

// checkValue reports whether v (as YAML, the environment or a flag gives
// it) fits a field of type t, and if not what is expected.
func checkValue(t reflect.Type, v any) (want string, ok bool) {
	if v == nil {
		return "", true // `key:` with nothing: the zero value
	}
	switch {
	case t == durationType:
		switch x := v.(type) {
		case string:
			if _, err := time.ParseDuration(strings.TrimSpace(x)); err == nil {
				return "", true
			}
			return durationHint, false
		case int, int64, float64:
			if fmt.Sprint(x) == "0" {
				return "", true
			}
			return durationHint + " (a bare number has no unit)", false
		}
		return durationHint, false
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Int64:
		switch x := v.(type) {
		case int, int64:
			return "", true
		case float64:
			if x == math.Trunc(x) && math.Abs(x) < 1<<53 {
				return "", true
			}
		case string:
			if _, err := strconv.ParseInt(strings.TrimSpace(x), 10, 64); err == nil {
				return "", true
			}
		}
		return "a whole number", false
	case t.Kind() == reflect.Bool:
		switch x := v.(type) {
		case bool:
			return "", true
		case string:
			if _, err := strconv.ParseBool(strings.TrimSpace(x)); err == nil {
				return "", true
			}
		}
		return "true or false", false
	case t.Kind() == reflect.String:
		switch v.(type) {
		case []any, []string, map[string]any:
			return "a single value, not a list or a section", false
		}
		return "", true
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.String:
		switch x := v.(type) {
		case string, []string:
			return "", true
		case []any:
			for _, e := range x {
				switch e.(type) {
				case []any, map[string]any:
					return "a list of single values, e.g. [\"10.0.0.11:26379\", \"10.0.0.12:26379\"]", false
				}
			}
			return "", true
		}
		return "a list, e.g. [\"10.0.0.11:26379\", \"10.0.0.12:26379\"]", false
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Struct:
		if x, ok := v.([]any); ok {
			for _, e := range x {
				if _, ok := e.(map[string]any); !ok {
					return "a list of entries with their own keys (see the shipped redhaven.yaml)", false
				}
			}
			return "", true
		}
		return "a list of entries with their own keys (see the shipped redhaven.yaml)", false
	}
	return "", true
}

// showValue prints a value as the operator wrote it.
func showValue(v any) string {
	switch x := v.(type) {
	case string:
		return strconv.Quote(x)
	case []any, []string, map[string]any:
		s := fmt.Sprint(x)
		if len(s) > 60 {
			s = s[:57] + "..."
		}
		return s
	}
	return fmt.Sprint(v)
}

// checkTypes checks every value in k against the config struct's field
// types, and deletes the bad ones from k (so decoding leaves them at their
// defaults). origin names where a key came from when it was not the file.
func checkTypes(k *koanf.Koanf, types map[string]reflect.Type, origin map[string]string) []error {
	var errs []error
	keys := k.Keys()
	sort.Strings(keys)
	for _, key := range keys {
		t, known := types[key]
		if !known {
			continue // unknown keys are reported by checkKeys
		}
		v := k.Get(key)
		if want, ok := checkValue(t, v); !ok {
			name := key
			if o := origin[key]; o != "" {
				name += " (" + o + ")"
			}
			errs = append(errs, fmt.Errorf("%s: got %s; want %s", name, showValue(v), want))
			k.Delete(key)
		}
	}
	return errs
}

// yamlError returns the parse error of a config file with the line where
// the problem is. yaml.v3 names the line where the enclosing block starts
// (`node_name: n1` / `- a` is reported on line 1); the problem is on the
// line after the longest prefix of the file that still parses.
func yamlError(path string, data []byte, err error) error {
	msg := err.Error()
	if strings.Contains(msg, "unmarshal errors") {
		return fmt.Errorf("config file %s: %s", path, msg) // these name the right lines already
	}
	_, problem, _ := strings.Cut(msg, ": ")
	if m := regexp.MustCompile(`^line \d+: `).FindString(problem); m != "" {
		problem = strings.TrimPrefix(problem, m)
	}
	lines := strings.Split(string(data), "\n")
	bad := 0
	for n := len(lines) - 1; n >= 0; n-- {
		if _, perr := yaml.Parser().Unmarshal([]byte(strings.Join(lines[:n], "\n"))); perr == nil {
			bad = n + 1
			break
		}
	}
	if bad < 1 || bad > len(lines) {
		return fmt.Errorf("config file %s: %s", path, msg)
	}
	return fmt.Errorf("config file %s: line %d: %s (YAML)\n  %d | %s", path, bad, problem, bad, strings.TrimRight(lines[bad-1], "\r"))
}

// listener is one address the agent binds.
type listener struct {
	key, addr string
}

func (c Config) listeners() []listener {
	var ls []listener
	if len(c.Services) == 0 {
		ls = append(ls, listener{"proxy.listen", c.Proxy.Listen})
		if c.Proxy.ReadonlyListen != "" {
			ls = append(ls, listener{"proxy.readonly_listen", c.Proxy.ReadonlyListen})
		}
	}
	for i, s := range c.ServiceConfigs() {
		if len(c.Services) == 0 {
			break
		}
		ls = append(ls, listener{fmt.Sprintf("services[%d].listen", i), s.Proxy.Listen})
		if s.Proxy.ReadonlyListen != "" {
			ls = append(ls, listener{fmt.Sprintf("services[%d].readonly_listen", i), s.Proxy.ReadonlyListen})
		}
	}
	return append(ls, listener{"http.listen", c.HTTP.Listen},
		listener{"cluster.bind", c.Cluster.Bind}, listener{"cluster.raft_bind", c.Cluster.RaftBind})
}

var hostName = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$`)

// checkListeners reports listen addresses with a bad port or host (the
// sections check only the host:port shape) and listeners that would bind
// the same port. Port 0 (a free port chosen at start) clashes with none.
func (c Config) checkListeners() []error {
	var errs []error
	type bound struct {
		listener
		host string
		port int
	}
	var ok []bound
	for _, l := range c.listeners() {
		host, portS, err := net.SplitHostPort(l.addr)
		if err != nil {
			continue // the section's Validate names it
		}
		port, perr := strconv.Atoi(portS)
		if perr != nil || port < 0 || port > 65535 {
			if !strings.HasPrefix(l.key, "cluster.") { // cluster's own check names its ports
				errs = append(errs, fmt.Errorf("%s: got %q; want host:port with a port from 1 to 65535", l.key, l.addr))
			}
			continue
		}
		if host != "" && net.ParseIP(host) == nil && !hostName.MatchString(host) {
			errs = append(errs, fmt.Errorf("%s: got %q; want an IP address or host name before the port (or nothing, for every address)", l.key, l.addr))
			continue
		}
		ok = append(ok, bound{l, host, port})
	}
	wildcard := func(h string) bool { return h == "" || h == "0.0.0.0" || h == "::" }
	for i := range ok {
		for j := i + 1; j < len(ok); j++ {
			a, b := ok[i], ok[j]
			if a.port == 0 || a.port != b.port {
				continue
			}
			if a.host == b.host || wildcard(a.host) || wildcard(b.host) {
				errs = append(errs, fmt.Errorf("%s and %s: both listen on port %d (%q, %q); give each its own port", a.key, b.key, a.port, a.addr, b.addr))
			}
		}
	}
	return errs
}

// Warnings lists settings of a valid configuration that have no effect,
// so that an operator who set them learns it before relying on them.
func (c Config) Warnings() []string {
	var w []string
	d := DefaultConfig()
	if c.VIP.EffectiveMode() == vip.ModeNone {
		for _, s := range []struct{ key, val string }{
			{"vip.address", c.VIP.Address}, {"vip.interface", c.VIP.Interface}, {"vip.label", c.VIP.Label},
			{"vip.on_acquire", c.VIP.OnAcquire}, {"vip.on_release", c.VIP.OnRelease},
		} {
			if s.val != "" {
				w = append(w, fmt.Sprintf("%s is set (%q) but vip.mode is none: no node will hold a virtual IP (set vip.mode: netlink to use it)", s.key, s.val))
			}
		}
	}
	for i, s := range c.ServiceConfigs() {
		prefer, ro := "proxy.prefer_replica", "proxy.readonly_listen"
		if len(c.Services) > 0 {
			ro = fmt.Sprintf("services[%d].readonly_listen", i)
			if c.Services[i].PreferReplica != nil {
				prefer = fmt.Sprintf("services[%d].prefer_replica", i)
			}
		}
		if s.Proxy.ReadonlyListen == "" && s.Proxy.PreferReplica != "" {
			w = append(w, fmt.Sprintf("%s is set (%q) but %s is empty: there are no replica reads to prefer it for", prefer, s.Proxy.PreferReplica, ro))
		}
	}
	if !c.Proxy.Multiplex {
		if c.Proxy.MultiplexConns != d.Proxy.MultiplexConns {
			w = append(w, fmt.Sprintf("proxy.multiplex_conns is %d but proxy.multiplex is off: it has no effect", c.Proxy.MultiplexConns))
		}
		if c.Proxy.ClientOutputLimit != d.Proxy.ClientOutputLimit {
			w = append(w, fmt.Sprintf("proxy.client_output_limit is %d but proxy.multiplex is off: it applies to multiplexed clients only", c.Proxy.ClientOutputLimit))
		}
	}
	if len(c.Redis.Sentinels) == 0 && (c.Redis.SentinelUsername != "" || c.Redis.SentinelPassword != "") {
		w = append(w, "redis.sentinel_username/sentinel_password are set but redis.sentinels is empty: no Sentinel is asked")
	}
	if c.Cluster.Insecure && c.Cluster.Secured() {
		w = append(w, "cluster.insecure is set but a cluster key or TLS files are configured, which are used: it has no effect")
	}
	if len(c.HTTP.AllowedHosts) > 0 && !hasAdmin(c.HTTP.Auth) {
		w = append(w, "http.allowed_hosts is set but no http.auth user has role admin: over TCP nobody may act, so no Host is checked")
	}
	if !c.Cluster.MultiNode() && c.Cluster.DeadServerCleanup > 0 {
		w = append(w, "cluster.dead_server_cleanup is set on a single-node cluster (bootstrap_expect 1, no join): there is no other server to remove")
	}
	return w
}

func hasAdmin(users []webui.User) bool {
	for _, u := range users {
		if u.Role == webui.RoleAdmin {
			return true
		}
	}
	return false
}

// Summary says in a few lines what an agent with this configuration will
// do: listeners, Sentinels, cluster join and size, VIP or not.
func (c Config) Summary() string {
	var b strings.Builder
	line := func(k, format string, args ...any) {
		fmt.Fprintf(&b, "  %-9s %s\n", k+":", fmt.Sprintf(format, args...))
	}
	line("node", "%s (data in %s)", c.NodeName, c.DataDir)
	ro := "off"
	if c.Proxy.ReadonlyListen != "" {
		ro = c.Proxy.ReadonlyListen + " (replicas)"
	}
	auth := "no AUTH needed from clients"
	if c.Proxy.Password != "" {
		auth = "clients must AUTH"
	}
	mux := "1:1 backend connections"
	if c.Proxy.Multiplex {
		mux = "multiplexed"
	}
	several := len(c.ServiceConfigs()) > 1
	if several {
		// Listeners and masters are each service's (below).
		line("proxy", "%s for every service; listeners, client AUTH and limits per service below", mux)
		line("redis", "ROLE checked every %v; each service's master and Sentinels below", c.Redis.CheckInterval)
	} else {
		line("proxy", "read-write on %s, read-only %s; %s, %s; commands wait up to %v for a master", c.Proxy.Listen, ro, auth, mux, c.Proxy.HoldTimeout)
	}
	switch {
	case several: // said above
	case len(c.Redis.Sentinels) > 0:
		line("redis", "master %q from %d Sentinel(s): %s; ROLE checked every %v", c.Redis.MasterName, len(c.Redis.Sentinels), strings.Join(c.Redis.Sentinels, ", "), c.Redis.CheckInterval)
	default:
		line("redis", "no Sentinel: the master is chosen from ROLE checks of %s every %v", strings.Join(c.Redis.Nodes, ", "), c.Redis.CheckInterval)
	}
	from := "the shorthand keys (redis.master_name, proxy.listen, ...)"
	if len(c.Services) > 0 {
		from = "services:"
	}
	line("services", "%d, from %s", len(c.ServiceConfigs()), from)
	for _, s := range c.ServiceConfigs() {
		fmt.Fprintf(&b, "    %s\n", s.summary())
	}
	cc := c.Cluster
	size := fmt.Sprintf("forms a new cluster once %d nodes have joined", cc.BootstrapExpect)
	switch cc.BootstrapExpect {
	case 0:
		size = "never forms a cluster itself: waits to be added to a running one"
	case 1:
		size = "single node: forms a cluster of one at once"
	}
	join := "no join list"
	if len(cc.Join) > 0 {
		join = "joins " + strings.Join(cc.Join, ", ")
	}
	sec := "plain text (no cluster key)"
	switch {
	case cc.TLS.Enabled():
		sec = "Raft TLS from cluster.tls files"
	case cc.Encrypt != "":
		sec = "encrypted with the cluster key"
	case cc.Insecure && cc.MultiNode():
		sec = "PLAIN TEXT (cluster.insecure)"
	}
	line("cluster", "gossip %s, Raft %s; %s; %s; %s", cc.Bind, cc.RaftBind, join, size, sec)
	if c.VIP.EffectiveMode() == vip.ModeNetlink {
		line("vip", "%s on %s, held by the node with the committed VIP lease", c.VIP.Address, c.VIP.Interface)
	} else {
		line("vip", "none (a load balancer can pick the leader from /health/leader)")
	}
	users := "page and API read-only over TCP, no users"
	if len(c.HTTP.Auth) > 0 {
		users = fmt.Sprintf("%d user(s) in http.auth", len(c.HTTP.Auth))
	}
	scheme := "http"
	if c.HTTP.TLSCert != "" {
		scheme = "https"
	}
	sock := "no admin socket"
	if c.HTTP.AdminSocket != "" {
		sock = "admin socket " + c.HTTP.AdminSocket
	}
	line("http", "%s on %s (page, API, /metrics, health); %s; %s", scheme, c.HTTP.Listen, users, sock)
	line("log", "%s, %s", c.Log.Level, c.Log.Format)
	return b.String()
}
