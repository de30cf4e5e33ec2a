package node

// Services: the Redis masters (Sentinel's master names) one agent serves.
// The `services:` list names each with its own listeners, auth, Sentinels
// and limits; every key of an entry is optional except the name and
// inherits from the `redis:` and `proxy:` sections, which are the defaults
// of every service. Without `services:`, today's keys (redis.master_name,
// proxy.listen, ...) describe the only service (the shorthand).
//
// A service may have its own VIP (`vip:` in its entry: address, and
// interface, default vip.interface; the rest of the `vip:` section applies
// to it too); the services without one share the `vip:` section's VIP.
// Every VIP address is one service's or the shared one: two services with
// the same address, or a service's equal to the shared one, are errors.

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/knadh/koanf/v2"

	"github.com/redhaven/redhaven/proxy"
	"github.com/redhaven/redhaven/proxy/topology"
	"github.com/redhaven/redhaven/vip"
)

// ServiceEntry is one entry of the `services:` list as written in the
// file. A nil field is not set and inherits the shared sections' value.
type ServiceEntry struct {
	// Name is Sentinel's master name (required, unique).
	Name string `koanf:"name"`
	// Listen and ReadonlyListen are the service's listeners (proxy.listen,
	// proxy.readonly_listen).
	Listen         *string `koanf:"listen"`
	ReadonlyListen *string `koanf:"readonly_listen"`
	// Password is required from clients (as proxy.password).
	Password *string `koanf:"password"`
	// RedisUsername and RedisPassword authenticate to this service's Redis
	// nodes (as redis.username, redis.password).
	RedisUsername *string `koanf:"redis_username"`
	RedisPassword *string `koanf:"redis_password"`
	// Sentinels and Nodes as redis.sentinels and redis.nodes.
	Sentinels *[]string `koanf:"sentinels"`
	Nodes     *[]string `koanf:"nodes"`
	// PreferReplica, MaxReplicaLag, MaxClients, HoldTimeout as
	// proxy.prefer_replica, redis.max_replica_lag, proxy.max_clients,
	// proxy.hold_timeout.
	PreferReplica *string        `koanf:"prefer_replica"`
	MaxReplicaLag *int64         `koanf:"max_replica_lag"`
	MaxClients    *int           `koanf:"max_clients"`
	HoldTimeout   *time.Duration `koanf:"hold_timeout"`
	// VIP is the service's own virtual IP; nil: the service shares the
	// vip section's.
	VIP *ServiceVIP `koanf:"vip"`
}

// ServiceVIP is a service's own VIP (`services[i].vip`). Every other
// VIP setting (ARP, lifetime, hooks, check interval) is the vip
// section's; the mode is netlink.
type ServiceVIP struct {
	// Address is the VIP with its prefix length ("10.0.0.101/24").
	Address string `koanf:"address"`
	// Interface is the link it is added to; default vip.interface.
	Interface string `koanf:"interface"`
}

// ServiceConfig is one service as the agent runs it: its name and the
// whole watcher and proxy configuration (the shared sections with the
// entry's keys applied; the proxy's backend credentials filled in).
type ServiceConfig struct {
	Name  string
	Redis topology.Config
	Proxy proxy.Config
	// VIP is the service's own VIP (the vip section with the entry's
	// address and interface, mode netlink); nil when it shares the
	// vip section's.
	VIP *vip.Config
}

// serviceKeys maps each key of a service entry to the shared key it
// overrides.
var serviceKeys = map[string]string{
	"name":            "redis.master_name",
	"listen":          "proxy.listen",
	"readonly_listen": "proxy.readonly_listen",
	"password":        "proxy.password",
	"redis_username":  "redis.username",
	"redis_password":  "redis.password",
	"sentinels":       "redis.sentinels",
	"nodes":           "redis.nodes",
	"prefer_replica":  "proxy.prefer_replica",
	"max_replica_lag": "redis.max_replica_lag",
	"max_clients":     "proxy.max_clients",
	"hold_timeout":    "proxy.hold_timeout",
}

// ServiceConfigs returns every service the agent serves, in the order of
// `services:`; without it, the one service of the shorthand keys.
func (c Config) ServiceConfigs() []ServiceConfig {
	if len(c.Services) == 0 {
		return []ServiceConfig{c.serviceFrom(c.Redis.MasterName, nil)}
	}
	out := make([]ServiceConfig, len(c.Services))
	for i := range c.Services {
		out[i] = c.serviceFrom(c.Services[i].Name, &c.Services[i])
	}
	return out
}

func (c Config) serviceFrom(name string, e *ServiceEntry) ServiceConfig {
	r, p := c.Redis, c.Proxy
	r.Sentinels = append([]string(nil), r.Sentinels...)
	r.Nodes = append([]string(nil), r.Nodes...)
	p.DenyCommands = append([]string(nil), p.DenyCommands...)
	r.MasterName = name
	if e != nil {
		setIf(&p.Listen, e.Listen)
		setIf(&p.ReadonlyListen, e.ReadonlyListen)
		setIf(&p.Password, e.Password)
		setIf(&r.Username, e.RedisUsername)
		setIf(&r.Password, e.RedisPassword)
		if e.Sentinels != nil {
			r.Sentinels = append([]string(nil), (*e.Sentinels)...)
		}
		if e.Nodes != nil {
			r.Nodes = append([]string(nil), (*e.Nodes)...)
		}
		setIf(&p.PreferReplica, e.PreferReplica)
		setIf(&r.MaxReplicaLag, e.MaxReplicaLag)
		setIf(&p.MaxClients, e.MaxClients)
		setIf(&p.HoldTimeout, e.HoldTimeout)
	}
	p.BackendUsername, p.BackendPassword = r.Username, r.Password
	sc := ServiceConfig{Name: name, Redis: r, Proxy: p}
	if e != nil && e.VIP != nil {
		v := c.VIP
		v.Mode, v.Address, v.Label = vip.ModeNetlink, e.VIP.Address, ""
		if e.VIP.Interface != "" {
			v.Interface = e.VIP.Interface
		}
		sc.VIP = &v
	}
	return sc
}

// SharedVIPServices lists the services that share the vip section's VIP
// (those without their own), in config order; every service when all
// have their own (the shared VIP, if configured, then needs them all).
func (c Config) SharedVIPServices() []string {
	var out, all []string
	for _, s := range c.ServiceConfigs() {
		all = append(all, s.Name)
		if s.VIP == nil {
			out = append(out, s.Name)
		}
	}
	if len(out) == 0 {
		return all
	}
	return out
}

// validateServiceVIPs checks the services' own VIPs: each a valid address
// on a valid interface, and no address used twice (two services, or a
// service and the shared VIP); each error names both services.
func (c Config) validateServiceVIPs() []error {
	var errs []error
	type owner struct {
		key, service string
	}
	seen := map[netip.Addr]owner{}
	if c.VIP.EffectiveMode() == vip.ModeNetlink {
		if p, err := vip.ParseAddress(c.VIP.Address); err == nil {
			seen[p.Addr()] = owner{"vip.address", ""}
		}
	}
	shared := quoted(c.SharedVIPServices())
	for i, e := range c.Services {
		if e.VIP == nil {
			continue
		}
		at := fmt.Sprintf("services[%d].vip", i)
		if e.VIP.Address == "" {
			errs = append(errs, fmt.Errorf("%s.address: required in a service's vip (e.g. 10.0.0.101/24); remove vip to share vip.address", at))
			continue
		}
		v := c.serviceFrom(e.Name, &c.Services[i]).VIP
		for _, err := range flattenErrors(v.Validate()) {
			// Only the keys the entry sets; the others are the vip
			// section's, reported as such.
			switch k := errKey(err); k {
			case "vip.address", "vip.interface":
				errs = append(errs, errors.New(at+strings.TrimPrefix(err.Error(), "vip")))
			}
		}
		p, err := vip.ParseAddress(e.VIP.Address)
		if err != nil {
			continue
		}
		o, dup := seen[p.Addr()]
		switch {
		case !dup:
			seen[p.Addr()] = owner{at + ".address", e.Name}
		case o.service == "":
			errs = append(errs, fmt.Errorf("%s.address: %s of service %q is also vip.address, the VIP shared by service(s) %s; every VIP needs its own address",
				at, p.Addr(), e.Name, shared))
		default:
			errs = append(errs, fmt.Errorf("%s.address: %s of service %q is also %s of service %q; every VIP needs its own address",
				at, p.Addr(), e.Name, o.key, o.service))
		}
	}
	return errs
}

func setIf[T any](dst *T, v *T) {
	if v != nil {
		*dst = *v
	}
}

// set reports which keys of the entry are set (by their entry names).
func (e ServiceEntry) set() map[string]bool {
	out := map[string]bool{"name": true}
	v, t := reflect.ValueOf(e), reflect.TypeOf(e)
	for i := range t.NumField() {
		if f := v.Field(i); f.Kind() == reflect.Pointer && !f.IsNil() {
			out[t.Field(i).Tag.Get("koanf")] = true
		}
	}
	return out
}

// shorthandConflicts reports the shorthand keys set (to something but
// their default) together with `services:`, where they would be
// ambiguous. A single service copied into the sections by ApplyServices
// is no conflict: the values are the service's own.
func (c Config) shorthandConflicts() []error {
	if len(c.Services) == 0 {
		return nil
	}
	d := DefaultConfig()
	one := len(c.Services) == 1
	var e ServiceEntry
	if one {
		e = c.Services[0]
	}
	var errs []error
	if c.Redis.MasterName != d.Redis.MasterName && !(one && c.Redis.MasterName == e.Name) {
		errs = append(errs, fmt.Errorf("redis.master_name: set (%q) together with services: move it into a service entry as its name", c.Redis.MasterName))
	}
	if c.Proxy.Listen != d.Proxy.Listen && !(one && e.Listen != nil && *e.Listen == c.Proxy.Listen) {
		errs = append(errs, fmt.Errorf("proxy.listen: set (%q) together with services: move it into a service entry as its listen", c.Proxy.Listen))
	}
	if c.Proxy.ReadonlyListen != d.Proxy.ReadonlyListen && !(one && e.ReadonlyListen != nil && *e.ReadonlyListen == c.Proxy.ReadonlyListen) {
		errs = append(errs, fmt.Errorf("proxy.readonly_listen: set (%q) together with services: move it into a service entry as its readonly_listen", c.Proxy.ReadonlyListen))
	}
	return errs
}

// ApplyServices returns c with its single service (of `services:`) copied
// into the redis and proxy sections (what the single-service parts, e.g.
// check-config's words and reload's live keys, read; the agent runs
// ServiceConfigs). LoadConfig does it; with no or several
// services, or shorthand keys that conflict, c is returned unchanged
// (Validate reports why). It is idempotent.
func (c Config) ApplyServices() Config {
	if len(c.Services) != 1 || len(c.shorthandConflicts()) > 0 {
		return c
	}
	s := c.ServiceConfigs()[0]
	c.Redis, c.Proxy = s.Redis, s.Proxy
	c.Proxy.BackendUsername, c.Proxy.BackendPassword = "", "" // node fills them, as for the shorthand
	return c
}

var serviceName = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

// validateServices checks the `services:` list; each error names its key
// (services[1].listen). sharedErrs are the redis and proxy sections' own
// errors: with `services:`, those of keys a service entry can set are
// checked per service instead, named by the entry's key when the entry
// sets it, else by the shared key it inherits (once).
func (c Config) validateServices(sharedErrs []error) []error {
	if len(c.Services) == 0 {
		return sharedErrs
	}
	sharedOf := map[string]string{}
	for ek, shared := range serviceKeys {
		sharedOf[shared] = ek
	}
	var errs []error
	for _, err := range sharedErrs {
		if _, ok := sharedOf[errKey(err)]; !ok {
			errs = append(errs, err)
		}
	}
	errs = append(errs, c.shorthandConflicts()...)
	seen := map[string]int{}
	inherited := map[string]bool{}
	for i, e := range c.Services {
		at := fmt.Sprintf("services[%d]", i)
		switch {
		case e.Name == "":
			errs = append(errs, fmt.Errorf("%s.name: required (Sentinel's master name)", at))
		case !serviceName.MatchString(e.Name):
			errs = append(errs, fmt.Errorf("%s.name: %q has characters other than letters, digits, '.', '_' and '-'", at, e.Name))
		default:
			if j, dup := seen[e.Name]; dup {
				errs = append(errs, fmt.Errorf("%s.name: %q is also services[%d].name; every service needs its own name", at, e.Name, j))
			} else {
				seen[e.Name] = i
			}
		}
		s := c.serviceFrom(e.Name, &c.Services[i])
		set := e.set()
		for _, err := range flattenErrors(errors.Join(s.Redis.Validate(), s.Proxy.Validate())) {
			key := errKey(err)
			ek, ok := sharedOf[key]
			switch {
			case !ok || ek == "name":
				continue // a shared key (reported above), or the name (checked above)
			case set[ek]:
				errs = append(errs, errors.New(at+"."+ek+strings.TrimPrefix(err.Error(), key)))
			case !inherited[err.Error()]:
				inherited[err.Error()] = true
				errs = append(errs, err)
			}
		}
	}
	return errs
}

// errKey returns the key an error names: "redis.sentinels[1]: bad" ->
// "redis.sentinels".
func errKey(err error) string {
	s := err.Error()
	if i := strings.IndexAny(s, ":[ "); i >= 0 {
		return s[:i]
	}
	return s
}

// serviceEntryTypes maps each key of a service entry to the type its
// value must fit.
func serviceEntryTypes() map[string]reflect.Type {
	out := map[string]reflect.Type{}
	t := reflect.TypeOf(ServiceEntry{})
	for i := range t.NumField() {
		ft := t.Field(i).Type
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		out[t.Field(i).Tag.Get("koanf")] = ft
	}
	return out
}

// checkServiceEntries reports unknown keys and values of the wrong type
// in the entries of `services:` (koanf keeps a list as one value, so the
// top-level key check does not see inside), and removes them from k so
// that decoding leaves them unset. where names the file.
func checkServiceEntries(k *koanf.Koanf, where string) []error {
	list, ok := k.Get("services").([]any)
	if !ok {
		return nil // absent, or not a list: checkTypes says so
	}
	types := serviceEntryTypes()
	var errs []error
	clean := make([]any, len(list))
	for i, raw := range list {
		m, ok := raw.(map[string]any)
		if !ok {
			return nil // checkTypes says so
		}
		at := fmt.Sprintf("services[%d].", i)
		valid := map[string]bool{}
		for key := range types {
			valid[at+key] = true
		}
		keys := make([]string, 0, len(m))
		for key := range m {
			keys = append(keys, key)
		}
		sort.Strings(keys)
		out := map[string]any{}
		for _, key := range keys {
			v := m[key]
			t, known := types[key]
			if !known {
				errs = append(errs, fmt.Errorf("%s: unknown key %q%s", where, at+key, suggest(at+key, valid)))
				continue
			}
			if t.Kind() == reflect.Struct {
				sub, subErrs := checkSection(t, v, at+key, where)
				errs = append(errs, subErrs...)
				if sub != nil {
					out[key] = sub
				}
				continue
			}
			if want, ok := checkValue(t, v); !ok {
				errs = append(errs, fmt.Errorf("%s: got %s; want %s", at+key, showValue(v), want))
				continue
			}
			out[key] = v
		}
		clean[i] = out
	}
	if len(errs) > 0 {
		k.Delete("services")
		if err := k.Set("services", clean); err != nil {
			errs = append(errs, fmt.Errorf("services: %w", err))
		}
	}
	return errs
}

// checkSection checks a section inside a service entry (its vip): a map
// whose keys are t's koanf tags and whose values fit their types. It
// returns the good keys (nil when v is no section).
func checkSection(t reflect.Type, v any, at, where string) (map[string]any, []error) {
	m, ok := v.(map[string]any)
	if !ok {
		if v == nil {
			return map[string]any{}, nil
		}
		return nil, []error{fmt.Errorf("%s: got %s; want a section with its own keys", at, showValue(v))}
	}
	types := map[string]reflect.Type{}
	valid := map[string]bool{}
	for i := range t.NumField() {
		tag := t.Field(i).Tag.Get("koanf")
		types[tag] = t.Field(i).Type
		valid[at+"."+tag] = true
	}
	var errs []error
	out := map[string]any{}
	for _, key := range slices.Sorted(maps.Keys(m)) {
		ft, known := types[key]
		switch {
		case !known:
			errs = append(errs, fmt.Errorf("%s: unknown key %q%s", where, at+"."+key, suggest(at+"."+key, valid)))
		default:
			if want, ok := checkValue(ft, m[key]); !ok {
				errs = append(errs, fmt.Errorf("%s.%s: got %s; want %s", at, key, showValue(m[key]), want))
				continue
			}
			out[key] = m[key]
		}
	}
	return out, errs
}

// summary is one service in check-config's words (no secrets).
func (s ServiceConfig) summary() string {
	ro := "no read-only listener"
	if s.Proxy.ReadonlyListen != "" {
		ro = "read-only on " + s.Proxy.ReadonlyListen
	}
	src := fmt.Sprintf("%d Sentinel(s): %s", len(s.Redis.Sentinels), strings.Join(s.Redis.Sentinels, ", "))
	if len(s.Redis.Sentinels) == 0 {
		src = "no Sentinel, ROLE checks of " + strings.Join(s.Redis.Nodes, ", ")
	}
	onOff := map[bool]string{true: "on", false: "off"}
	own := ""
	if s.VIP != nil {
		own = fmt.Sprintf("; own VIP %s on %s", s.VIP.Address, s.VIP.Interface)
	}
	return fmt.Sprintf("%q: read-write on %s, %s; %s; client AUTH %s, Redis auth %s%s",
		s.Name, s.Proxy.Listen, ro, src, onOff[s.Proxy.Password != ""], onOff[s.Redis.Password != "" || s.Redis.Username != ""], own)
}
