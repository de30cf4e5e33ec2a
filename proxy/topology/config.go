package topology

import (
	"errors"
	"fmt"
	"net"
	"time"
)

// Config is the watcher's configuration (the `redis` section).
type Config struct {
	// MasterName is Sentinel's name for the monitored master.
	MasterName string `koanf:"master_name"`
	// Sentinels are "host:port" addresses of the Sentinels. Empty means
	// no Sentinel: the watcher decides from ROLE probes alone.
	Sentinels []string `koanf:"sentinels"`
	// Nodes is an optional seed list of Redis nodes; more are discovered
	// from Sentinel and from the replicas a master reports.
	Nodes []string `koanf:"nodes"`
	// Username and Password authenticate the checks (and are replayed by
	// the proxy when it authenticates on the clients' behalf).
	Username string `koanf:"username"`
	Password string `koanf:"password"`
	// SentinelUsername and SentinelPassword authenticate to Sentinels.
	SentinelUsername string `koanf:"sentinel_username"`
	SentinelPassword string `koanf:"sentinel_password"`
	// CheckInterval is how often each node's ROLE is polled.
	CheckInterval time.Duration `koanf:"check_interval"`
	// MaxReplicaLag is the replication lag (bytes of offset) above which a
	// replica is not used for reads. 0 means no limit.
	MaxReplicaLag int64 `koanf:"max_replica_lag"`
	// DialTimeout bounds connecting to a node or Sentinel.
	DialTimeout time.Duration `koanf:"dial_timeout"`
	// TLS is TLS towards Redis and Sentinel (tls.go).
	TLS TLSConfig `koanf:"tls"`
	// ClientTLS, when set, is TLS's loaded files (NewClientTLS), shared
	// with the caller, who reloads them; nil: the watcher loads its own.
	ClientTLS *ClientTLS `koanf:"-"`
}

// DefaultConfig returns the defaults from DESIGN.md.
func DefaultConfig() Config {
	return Config{
		MasterName:    "mymaster",
		CheckInterval: time.Second,
		MaxReplicaLag: 1 << 20,
		DialTimeout:   500 * time.Millisecond,
		TLS:           TLSConfig{MinVersion: "1.2"},
	}
}

// Validate checks the configuration and names the bad key.
func (c Config) Validate() error {
	var errs []error
	if len(c.Sentinels) > 0 && c.MasterName == "" {
		errs = append(errs, errors.New("redis.master_name: required when redis.sentinels is set"))
	}
	if len(c.Sentinels) == 0 && len(c.Nodes) == 0 {
		errs = append(errs, errors.New("redis.sentinels: set at least one sentinel (or redis.nodes to run without Sentinel)"))
	}
	for i, a := range c.Sentinels {
		if err := checkHostPort(a); err != nil {
			errs = append(errs, fmt.Errorf("redis.sentinels[%d]: %w", i, err))
		}
	}
	for i, a := range c.Nodes {
		if err := checkHostPort(a); err != nil {
			errs = append(errs, fmt.Errorf("redis.nodes[%d]: %w", i, err))
		}
	}
	if c.CheckInterval < 10*time.Millisecond {
		errs = append(errs, fmt.Errorf("redis.check_interval: %v is too short (minimum 10ms)", c.CheckInterval))
	}
	if c.DialTimeout <= 0 {
		errs = append(errs, fmt.Errorf("redis.dial_timeout: must be positive, got %v", c.DialTimeout))
	}
	if c.MaxReplicaLag < 0 {
		errs = append(errs, fmt.Errorf("redis.max_replica_lag: must not be negative, got %d", c.MaxReplicaLag))
	}
	errs = append(errs, c.TLS.validate()...)
	return errors.Join(errs...)
}

// checkHostPort accepts "host:port" with a non-empty host and a port in 1..65535.
func checkHostPort(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("bad address %q: want host:port", addr)
	}
	if host == "" {
		return fmt.Errorf("bad address %q: missing host", addr)
	}
	var p int
	if _, err := fmt.Sscan(port, &p); err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("bad address %q: port must be 1-65535", addr)
	}
	return nil
}
