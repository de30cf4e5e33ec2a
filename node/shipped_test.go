package node

import (
	"fmt"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

const shippedConfig = "../packaging/redhaven.yaml"

// commentedKeys are documented in the shipped file as comments only: they
// have no default to write down (the host name; no users).
var commentedKeys = map[string]string{
	"node_name": "\n# node_name: ",
	"http.auth": "\n  # auth:\n",
	"services":  "\n# services:\n",
}

// shippedDiffers are the keys whose shipped value is not the built-in
// default, on purpose.
var shippedDiffers = map[string]string{
	"redis.sentinels": "[127.0.0.1:26379]", // Debian's local redis-sentinel
	"vip.mode":        "none",              // explicit: no VIP until the operator asks
}

// TestShippedConfigListsEveryKey: packaging/redhaven.yaml is the reference
// of the configuration. Every key of the config structs (their koanf tags)
// is in it, with a comment line right above it and its default value, and
// it has no key the agent does not know. A key added to a section without
// a line in the shipped file fails here.
func TestShippedConfigListsEveryKey(t *testing.T) {
	text, err := os.ReadFile(shippedConfig)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(text, &doc); err != nil {
		t.Fatalf("%s: %v", shippedConfig, err)
	}
	shipped := map[string]bool{}
	var walk func(prefix string, m map[string]any)
	walk = func(prefix string, m map[string]any) {
		for k, v := range m {
			if sub, ok := v.(map[string]any); ok {
				walk(prefix+k+".", sub)
				continue
			}
			shipped[prefix+k] = true
		}
	}
	walk("", doc)

	types := keyTypes(reflect.TypeOf(Config{}), "", map[string]reflect.Type{})
	var missing []string
	for key := range types {
		if marker, ok := commentedKeys[key]; ok {
			if !strings.Contains(string(text), marker) {
				t.Errorf("%s: %s should be documented as a comment (%q)", shippedConfig, key, marker)
			}
			continue
		}
		if !shipped[key] {
			missing = append(missing, key)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("%s lacks these keys (add each with its default and a one-line comment):\n  %s", shippedConfig, strings.Join(missing, "\n  "))
	}
	for key := range shipped {
		if _, ok := types[key]; !ok {
			t.Errorf("%s: key %q is not a config key", shippedConfig, key)
		}
	}

	// A comment line right above every key line.
	keyLine := regexp.MustCompile(`^\s*[a-z_]+:`)
	lines := strings.Split(string(text), "\n")
	for i, l := range lines {
		if !keyLine.MatchString(l) || strings.HasSuffix(strings.TrimSpace(l), ":") {
			continue // not a key, or a section header
		}
		if i == 0 || !strings.HasPrefix(strings.TrimSpace(lines[i-1]), "#") {
			t.Errorf("%s:%d: %q has no comment line above it", shippedConfig, i+1, strings.TrimSpace(l))
		}
	}

	// The values are the defaults.
	cfg, err := LoadConfig(shippedConfig, nil, nil)
	if err != nil {
		t.Fatalf("load %s: %v", shippedConfig, err)
	}
	got, def := keyValues(cfg), keyValues(DefaultConfig())
	for key, v := range got {
		if _, ok := commentedKeys[key]; ok {
			continue
		}
		want := def[key]
		if d, ok := shippedDiffers[key]; ok {
			want = d
		}
		if v != want {
			t.Errorf("%s: %s is %s, the default is %s", shippedConfig, key, v, want)
		}
	}
}

// keyValues prints every key's value of a config (empty lists as []).
func keyValues(cfg Config) map[string]string {
	out := map[string]string{}
	var walk func(prefix string, v reflect.Value)
	walk = func(prefix string, v reflect.Value) {
		for i := 0; i < v.NumField(); i++ {
			tag := v.Type().Field(i).Tag.Get("koanf")
			if tag == "" || tag == "-" {
				continue
			}
			f := v.Field(i)
			if f.Kind() == reflect.Struct {
				walk(prefix+tag+".", f)
				continue
			}
			if f.Kind() == reflect.Slice && f.Len() == 0 {
				out[prefix+tag] = "[]"
				continue
			}
			out[prefix+tag] = fmt.Sprint(f.Interface())
		}
	}
	walk("", reflect.ValueOf(cfg))
	return out
}
