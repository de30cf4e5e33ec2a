package proxy

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"
)

// Config is the proxy's configuration (the `proxy` section, plus the
// backend credentials that node copies from the `redis` section).
type Config struct {
	// Listen is the read-write listener ("host:port", ":6380").
	Listen string `koanf:"listen"`
	// ReadonlyListen is the optional read-only listener; "" is off.
	ReadonlyListen string `koanf:"readonly_listen"`
	// Password, when set, is required from clients (AUTH) before anything
	// else, and the proxy authenticates to Redis with BackendUsername /
	// BackendPassword. When empty, a client's AUTH goes through to Redis.
	Password string `koanf:"password"`
	// HoldTimeout is how long a command waits for a master when none is known.
	HoldTimeout time.Duration `koanf:"hold_timeout"`
	// MaxClients refuses clients beyond this many (per listener).
	MaxClients int `koanf:"max_clients"`
	// MaxRequestBytes refuses a single command larger than this.
	MaxRequestBytes int64 `koanf:"max_request_bytes"`
	// PreferReplica is the replica address the read-only listener
	// prefers (e.g. the one on this host), if healthy.
	PreferReplica string `koanf:"prefer_replica"`
	// DialTimeout bounds connecting to a backend.
	DialTimeout time.Duration `koanf:"dial_timeout"`
	// Multiplex sends the commands of sessions that hold no connection
	// state over a few shared, pipelined backend connections (mux.go);
	// a session moves to a connection of its own when it needs one.
	Multiplex bool `koanf:"multiplex"`
	// MultiplexConns is how many shared connections per backend address.
	MultiplexConns int `koanf:"multiplex_conns"`
	// ClientOutputLimit closes a multiplexed client whose unread replies
	// exceed this many bytes (a slow reader must not hold replies for
	// everyone on a shared connection; Redis's client-output-buffer-limit).
	ClientOutputLimit int64 `koanf:"client_output_limit"`
	// DenyCommands are refused with an error that names this key:
	// "COMMAND", "COMMAND SUBCOMMAND" or "CONFIG SET key" (deny.go).
	DenyCommands []string `koanf:"deny_commands"`
	// MaxBufferMemory bounds the memory all clients' buffered input and
	// unread output hold together; beyond it the largest consumers are
	// disconnected (budget.go). 0: a quarter of the machine's memory.
	MaxBufferMemory int64 `koanf:"max_buffer_memory"`
	// AuthTimeout closes a client that has not authenticated this long
	// after it connected (proxy.password mode); 0: never.
	AuthTimeout time.Duration `koanf:"auth_timeout"`
	// ClientIdleTimeout closes a client that sent nothing this long (as
	// Redis's timeout: not subscribers, nor clients waiting for a reply);
	// 0: never.
	ClientIdleTimeout time.Duration `koanf:"client_idle_timeout"`
	// MaxClientsPerIP refuses a client address more connections than this
	// (per proxy, both listeners); 0: no limit.
	MaxClientsPerIP int `koanf:"max_clients_per_ip"`

	// TLS is TLS on the client listeners (tls.go).
	TLS TLSConfig `koanf:"tls"`

	// BackendTLS, when set, gives the TLS configuration of each new
	// connection to Redis at an address (node's comes from redis.tls,
	// whose files a reload may change). Not a key of the proxy section.
	BackendTLS func(addr string) *tls.Config `koanf:"-"`

	// BackendUsername and BackendPassword come from redis.username /
	// redis.password; not a key of the proxy section.
	BackendUsername string `koanf:"-"`
	BackendPassword string `koanf:"-"`
}

// DefaultConfig returns the defaults from DESIGN.md.
func DefaultConfig() Config {
	return Config{
		Listen:          ":6380",
		HoldTimeout:     5 * time.Second,
		MaxClients:      10000,
		MaxRequestBytes: 512 << 20, // Redis's own proto-max-bulk-len
		DialTimeout:     time.Second,
		Multiplex:       true, // measured faster than 1:1 and HAProxy (README, make bench)
		MultiplexConns:  1,
		// Redis's largest bulk string, plus room for the replies queued
		// behind it.
		ClientOutputLimit: 1 << 30,
		DenyCommands:      append([]string(nil), DefaultDenyCommands...),
		AuthTimeout:       10 * time.Second,
		TLS:               TLSConfig{MinVersion: "1.2"},
	}
}

// Validate checks the configuration and names the bad key.
func (c Config) Validate() error {
	var errs []error
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		errs = append(errs, fmt.Errorf("proxy.listen: bad address %q: want host:port or :port", c.Listen))
	}
	if c.ReadonlyListen != "" {
		if _, _, err := net.SplitHostPort(c.ReadonlyListen); err != nil {
			errs = append(errs, fmt.Errorf("proxy.readonly_listen: bad address %q: want host:port or :port", c.ReadonlyListen))
		}
	}
	if c.HoldTimeout < 0 {
		errs = append(errs, fmt.Errorf("proxy.hold_timeout: must not be negative, got %v", c.HoldTimeout))
	}
	if c.MaxClients < 1 {
		errs = append(errs, fmt.Errorf("proxy.max_clients: must be at least 1, got %d", c.MaxClients))
	}
	if c.MaxRequestBytes < 1024 {
		errs = append(errs, fmt.Errorf("proxy.max_request_bytes: must be at least 1024, got %d", c.MaxRequestBytes))
	}
	if c.DialTimeout <= 0 {
		errs = append(errs, fmt.Errorf("proxy.dial_timeout: must be positive, got %v", c.DialTimeout))
	}
	if c.MultiplexConns < 1 || c.MultiplexConns > 64 {
		errs = append(errs, fmt.Errorf("proxy.multiplex_conns: must be 1..64, got %d", c.MultiplexConns))
	}
	if c.ClientOutputLimit < 1<<20 {
		errs = append(errs, fmt.Errorf("proxy.client_output_limit: must be at least 1048576 (1 MiB), got %d", c.ClientOutputLimit))
	}
	if _, err := parseDeny(c.DenyCommands); err != nil {
		errs = append(errs, err)
	}
	if c.MaxBufferMemory != 0 && c.MaxBufferMemory < 1<<20 {
		errs = append(errs, fmt.Errorf("proxy.max_buffer_memory: must be 0 (a quarter of the memory) or at least 1048576 (1 MiB), got %d", c.MaxBufferMemory))
	}
	if c.AuthTimeout < 0 {
		errs = append(errs, fmt.Errorf("proxy.auth_timeout: must not be negative (0 is off), got %v", c.AuthTimeout))
	}
	if c.ClientIdleTimeout < 0 {
		errs = append(errs, fmt.Errorf("proxy.client_idle_timeout: must not be negative (0 is off), got %v", c.ClientIdleTimeout))
	}
	if c.MaxClientsPerIP < 0 {
		errs = append(errs, fmt.Errorf("proxy.max_clients_per_ip: must not be negative (0 is off), got %d", c.MaxClientsPerIP))
	}
	errs = append(errs, c.TLS.validate()...)
	return errors.Join(errs...)
}
