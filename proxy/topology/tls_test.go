package topology

import (
	"strings"
	"testing"
	"time"

	"github.com/redhaven/redhaven/e2e/redistest"
	"github.com/redhaven/redhaven/e2e/testutil"
)

// TestWatcherTLS: Redis and Sentinel on TLS only; the watcher discovers
// the master and replicas through Sentinel over TLS (certificates verified
// against the IP addresses Sentinel reports) and follows a failover.
func TestWatcherTLS(t *testing.T) {
	x := redistest.NewTLS(t)
	set := redistest.StartSet(t, redistest.SetOptions{TLS: x})
	cfg := sentinelConfig(set)
	cfg.TLS = TLSConfig{Enabled: true, CAFile: x.CAFile, MinVersion: "1.2"}
	w, _ := startWatcher(t, cfg)
	o := waitTopology(t, w, set.Master.Addr, redistest.Addrs(set.Replicas))
	for _, s := range o.Sentinels {
		if !s.Reachable || s.Master != set.Master.Addr {
			t.Errorf("sentinel state %+v, want reachable reporting %s", s, set.Master.Addr)
		}
	}
	old := o.Master
	set.Master.Kill()
	testutil.Eventually(t, 30*time.Second, "a new master over TLS", func() bool {
		o := w.Observation()
		return o.Master != "" && o.Master != old
	})
	t.Logf("new master %s", w.Observation().Master)

	// With a server name the certificates do not carry, nothing is
	// trusted: no sentinel is reachable and no master is reported.
	bad := sentinelConfig(set)
	bad.TLS = TLSConfig{Enabled: true, CAFile: x.CAFile, ServerName: "not-the-name.example"}
	wb, _ := startWatcher(t, bad)
	testutil.Eventually(t, 10*time.Second, "sentinels fail verification", func() bool {
		o := wb.Observation()
		if len(o.Sentinels) == 0 || o.Master != "" {
			return false
		}
		for _, s := range o.Sentinels {
			if s.Reachable || !strings.Contains(s.LastError, "certificate") {
				return false
			}
		}
		return true
	})
}

func TestTLSConfigValidate(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Nodes = []string{"127.0.0.1:6379"}
	cfg.TLS = TLSConfig{Enabled: true, CertFile: "c.pem", MinVersion: "1.0"}
	err := cfg.Validate()
	for _, key := range []string{"redis.tls.key_file", "redis.tls.min_version"} {
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("error %v does not name %s", err, key)
		}
	}
	cfg.TLS = TLSConfig{Enabled: true, CAFile: "/nonexistent/ca.pem"}
	if _, err := New(cfg, nil); err == nil || !strings.Contains(err.Error(), "redis.tls.ca_file") {
		t.Errorf("missing CA file: %v", err)
	}
}
