package node

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"sort"
	"strings"

	"github.com/go-viper/mapstructure/v2"
	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/env/v2"
	"github.com/knadh/koanf/providers/posflag"
	"github.com/knadh/koanf/v2"
	"github.com/spf13/pflag"

	"github.com/redhaven/redhaven/cluster"
	"github.com/redhaven/redhaven/proxy"
	"github.com/redhaven/redhaven/proxy/topology"
	"github.com/redhaven/redhaven/vip"
	"github.com/redhaven/redhaven/webui"
)

// DefaultConfigPath is where the agent looks for its config file.
const DefaultConfigPath = "/etc/redhaven/redhaven.yaml"

// EnvPrefix starts every environment variable that overrides a config key:
// REDHAVEN_PROXY__HOLD_TIMEOUT=2s sets proxy.hold_timeout.
const EnvPrefix = "REDHAVEN_"

// envNotConfig are REDHAVEN_* variables that are not config keys (used by
// tests and CI), so they are not reported as unknown keys.
var envNotConfig = map[string]bool{
	"REDHAVEN_REQUIRE": true, "REDHAVEN_ARTIFACTS": true, "REDHAVEN_FIGURES": true, "REDHAVEN_DEB": true,
	"REDHAVEN_BIN":       true,                                 // e2e/demo.sh's binary
	"REDHAVEN_HTTP_USER": true, "REDHAVEN_HTTP_PASSWORD": true, // the CLI's credentials
}

// Config is the whole agent configuration; each section belongs to the
// package that uses it.
type Config struct {
	NodeName string          `koanf:"node_name"`
	DataDir  string          `koanf:"data_dir"`
	Redis    topology.Config `koanf:"redis"`
	Proxy    proxy.Config    `koanf:"proxy"`
	Cluster  cluster.Config  `koanf:"cluster"`
	VIP      vip.Config      `koanf:"vip"`
	HTTP     webui.Config    `koanf:"http"`
	Log      LogConfig       `koanf:"log"`
	// Services are the Redis masters this agent serves (services.go);
	// empty: the one of redis.master_name, proxy.listen, ... (the
	// shorthand). Set in the file only.
	Services []ServiceEntry `koanf:"services"`
}

// LogConfig is the `log` section.
type LogConfig struct {
	Level  string `koanf:"level"`  // debug, info, warn, error
	Format string `koanf:"format"` // text or json
}

// DefaultConfig returns every default from DESIGN.md.
func DefaultConfig() Config {
	host, _ := os.Hostname()
	return Config{
		NodeName: host,
		DataDir:  "/var/lib/redhaven",
		Redis:    topology.DefaultConfig(),
		Proxy:    proxy.DefaultConfig(),
		Cluster:  cluster.DefaultConfig(),
		VIP:      vip.DefaultConfig(),
		HTTP:     webui.DefaultConfig(),
		Log:      LogConfig{Level: "info", Format: "text"},
	}
}

// Validate checks every section; each error names its key.
func (c Config) Validate() error {
	var errs []error
	if c.NodeName == "" {
		errs = append(errs, errors.New("node_name: must not be empty"))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("data_dir: must not be empty"))
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log.level: %q is not one of debug, info, warn, error", c.Log.Level))
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		errs = append(errs, fmt.Errorf("log.format: %q is not one of text, json", c.Log.Format))
	}
	cc := c.Cluster
	cc.NodeName, cc.DataDir = c.NodeName, c.DataDir
	errs = append(errs, c.validateServices(flattenErrors(errors.Join(c.Redis.Validate(), c.Proxy.Validate())))...)
	errs = append(errs, c.validateServiceVIPs()...)
	errs = append(errs, cc.Validate(), c.VIP.Validate(), c.HTTP.Validate())
	errs = append(errs, c.checkListeners()...)
	return errors.Join(errs...)
}

// Flags registers the command-line flags that override the main keys.
// Each flag's name is its key with '.' and '_' written as '-'.
func Flags(fs *pflag.FlagSet) {
	d := DefaultConfig()
	fs.StringP("config", "c", DefaultConfigPath, "config file (YAML); a missing default file is fine, a missing named file is an error")
	fs.String("node-name", "", "this node's name (node_name; default: the host name)")
	fs.String("data-dir", d.DataDir, "directory for Raft data (data_dir)")
	fs.String("redis-master-name", d.Redis.MasterName, "Sentinel's name of the master (redis.master_name)")
	fs.StringSlice("redis-sentinels", nil, "Sentinel addresses host:port, comma-separated (redis.sentinels)")
	fs.StringSlice("redis-nodes", nil, "Redis node addresses host:port (redis.nodes; seeds, or the node list without Sentinel)")
	fs.Duration("redis-check-interval", d.Redis.CheckInterval, "how often each Redis node's ROLE is checked (redis.check_interval)")
	fs.String("proxy-listen", d.Proxy.Listen, "read-write proxy listener (proxy.listen)")
	fs.String("proxy-readonly-listen", "", "read-only proxy listener, off when empty (proxy.readonly_listen)")
	fs.Duration("proxy-hold-timeout", d.Proxy.HoldTimeout, "how long commands wait for a master (proxy.hold_timeout)")
	fs.Bool("proxy-multiplex", d.Proxy.Multiplex, "share pipelined backend connections among stateless clients (proxy.multiplex)")
	fs.String("cluster-bind", d.Cluster.Bind, "gossip address (cluster.bind)")
	fs.String("cluster-advertise", "", "gossip address other nodes use (cluster.advertise)")
	fs.String("cluster-raft-bind", d.Cluster.RaftBind, "Raft address (cluster.raft_bind)")
	fs.StringSlice("cluster-join", nil, "gossip address(es) of running agents to join (cluster.join)")
	fs.Int("cluster-bootstrap-expect", d.Cluster.BootstrapExpect, "servers to wait for before bootstrapping a new cluster (cluster.bootstrap_expect)")
	fs.String("vip-mode", d.VIP.Mode, "netlink or none (vip.mode)")
	fs.String("vip-address", "", "virtual IP with prefix, e.g. 10.0.0.100/24 (vip.address)")
	fs.String("vip-interface", "", "interface for the virtual IP (vip.interface)")
	fs.String("http-listen", d.HTTP.Listen, "stats page, API, metrics and health (http.listen)")
	fs.String("log-level", d.Log.Level, "debug, info, warn or error (log.level)")
	fs.String("log-format", d.Log.Format, "text or json (log.format)")
}

// flagKey maps a flag name to its config key ("proxy-hold-timeout" -> "proxy.hold_timeout").
func flagKey(name string, valid map[string]bool) string {
	parts := strings.SplitN(name, "-", 2)
	if len(parts) == 2 {
		if k := parts[0] + "." + strings.ReplaceAll(parts[1], "-", "_"); valid[k] {
			return k
		}
	}
	return strings.ReplaceAll(name, "-", "_")
}

// LoadConfig reads defaults, then the YAML file, then REDHAVEN_*
// environment variables, then the flags that were set. path "" means the
// default path, which may be missing; fs may be nil. A single service of
// `services:` is copied into the redis and proxy sections
// (ApplyServices), which are what the agent runs.
//
// When the file was read and parsed, every problem with keys and value
// types is returned at once as ConfigErrors, with the bad keys left at
// their defaults in the Config (Check adds Validate's findings). A file
// that cannot be read or parsed is a plain error.
func LoadConfig(path string, environ []string, fs *pflag.FlagSet) (Config, error) {
	cfg := DefaultConfig()
	valid := validKeys(reflect.TypeOf(cfg), "")
	k := koanf.New(".")
	var errs ConfigErrors
	origin := map[string]string{} // key -> where it came from, when not the file

	if path == "" {
		path = DefaultConfigPath
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			path = ""
		}
	}
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return cfg, fmt.Errorf("config file %s: %w", path, err)
		}
		if err := k.Load(bytesProvider(data), yaml.Parser()); err != nil {
			return cfg, yamlError(path, data, err)
		}
		errs = append(errs, flattenErrors(checkKeys(k.Keys(), valid, "config file "+path))...)
		errs = append(errs, checkServiceEntries(k, "config file "+path)...)
	}

	envK := koanf.New(".")
	err := envK.Load(env.Provider(".", env.Opt{
		Prefix:      EnvPrefix,
		EnvironFunc: func() []string { return environ },
		TransformFunc: func(name, value string) (string, any) {
			if envNotConfig[name] {
				return "", nil
			}
			key := strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(name, EnvPrefix)), "__", ".")
			if !valid[key] {
				errs = append(errs, fmt.Errorf("environment %s: unknown key %q%s", name, key, suggest(key, valid)))
				return "", nil
			}
			origin[key] = "environment " + name
			return key, value
		},
	}), nil)
	if err != nil {
		return cfg, fmt.Errorf("environment: %w", err)
	}
	if err := k.Merge(envK); err != nil {
		return cfg, fmt.Errorf("environment: %w", err)
	}

	if fs != nil {
		err := k.Load(posflag.ProviderWithFlag(fs, ".", k, func(f *pflag.Flag) (string, any) {
			if !f.Changed || f.Name == "config" {
				return "", nil
			}
			key := flagKey(f.Name, valid)
			origin[key] = "flag --" + f.Name
			if sv, ok := f.Value.(pflag.SliceValue); ok {
				return key, sv.GetSlice()
			}
			return key, f.Value.String()
		}), nil)
		if err != nil {
			return cfg, fmt.Errorf("flags: %w", err)
		}
	}

	// Types first, in the operator's words (no strconv internals, and a
	// bare number is not a duration); the bad keys are dropped so that the
	// decoder below keeps their defaults.
	errs = append(errs, checkTypes(k, keyTypes(reflect.TypeOf(cfg), "", map[string]reflect.Type{}), origin)...)

	dc := &mapstructure.DecoderConfig{
		DecodeHook: mapstructure.ComposeDecodeHookFunc(
			mapstructure.StringToTimeDurationHookFunc(),
			mapstructure.StringToSliceHookFunc(","),
			mapstructure.TextUnmarshallerHookFunc()),
		WeaklyTypedInput: true,
		Result:           &cfg,
		TagName:          "koanf",
	}
	if err := k.UnmarshalWithConf("", &cfg, koanf.UnmarshalConf{DecoderConfig: dc}); err != nil {
		errs = append(errs, fmt.Errorf("config: %s", cleanDecodeError(err, k)))
	}
	cfg = cfg.ApplyServices()
	if len(errs) > 0 {
		return cfg, errs
	}
	return cfg, nil
}

// bytesProvider is a koanf provider of a file's bytes, read once so that
// a YAML error can quote the line.
type bytesProvider []byte

func (b bytesProvider) ReadBytes() ([]byte, error) { return b, nil }
func (b bytesProvider) Read() (map[string]any, error) {
	return nil, errors.New("bytesProvider needs a parser")
}

// validKeys lists every dotted key of a config struct (by koanf tags). A
// struct-typed field is a section; every other field is a key.
func validKeys(t reflect.Type, prefix string) map[string]bool {
	keys := map[string]bool{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("koanf")
		if tag == "" || tag == "-" {
			continue
		}
		key := prefix + tag
		if f.Type.Kind() == reflect.Struct && f.Type.String() != "time.Time" {
			keys[key] = true // the section itself, e.g. REDHAVEN_PROXY is not useful but harmless
			for k := range validKeys(f.Type, key+".") {
				keys[k] = true
			}
			continue
		}
		keys[key] = true
	}
	return keys
}

func checkKeys(keys []string, valid map[string]bool, where string) error {
	var errs []error
	for _, k := range keys {
		if !valid[k] {
			errs = append(errs, fmt.Errorf("%s: unknown key %q%s", where, k, suggest(k, valid)))
		}
	}
	return errors.Join(errs...)
}

// suggest proposes the closest valid key for a typo: the nearest by edit
// distance (at most 3, less for short keys), else a key of the same section whose name starts
// or ends the unknown one ("cluster.join_list" -> "cluster.join").
func suggest(key string, valid map[string]bool) string {
	best, bestDist := "", min(4, len(key)/3+1) // "bin" is no typo of "vip"
	names := make([]string, 0, len(valid))
	for k := range valid {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		if d := editDistance(key, k); d < bestDist {
			best, bestDist = k, d
		}
	}
	if best == "" {
		section, name := "", key
		if i := strings.LastIndex(key, "."); i >= 0 {
			section, name = key[:i+1], key[i+1:]
		}
		for _, k := range names {
			other, ok := strings.CutPrefix(k, section)
			if ok && !strings.Contains(other, ".") && len(other) >= 3 &&
				(strings.HasPrefix(name, other) || strings.HasSuffix(name, other) || strings.HasPrefix(other, name)) {
				best = k
				break
			}
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// cleanDecodeError turns mapstructure's error into "key: problem (got value)" lines.
func cleanDecodeError(err error, k *koanf.Koanf) string {
	s := err.Error()
	s = strings.ReplaceAll(s, "decoding failed due to the following error(s):\n\n", "")
	s = strings.ReplaceAll(s, "'", "")
	var lines []string
	for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
		key, rest, ok := strings.Cut(line, " ")
		if ok && k.Exists(key) {
			line = fmt.Sprintf("%s: %s (got %q)", key, rest, fmt.Sprint(k.Get(key)))
		}
		lines = append(lines, line)
	}
	return strings.Join(lines, "; ")
}

// GenerateKey returns a new gossip encryption key for cluster.encrypt.
func GenerateKey() (string, error) { return cluster.GenerateKey() }
