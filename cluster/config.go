package cluster

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"
)

// Default ports, from DESIGN.md.
const (
	DefaultGossipPort = 7946
	DefaultRaftPort   = 7947
)

// Config is the cluster section of the redhaven configuration. The koanf
// names of the user-facing keys are fixed by DESIGN.md.
type Config struct {
	// NodeName is this node's unique name; it is also its Raft server ID.
	// Filled by node from node_name.
	NodeName string `koanf:"-"`
	// DataDir holds the Raft log (raft.db) and snapshots. Filled by node
	// from data_dir.
	DataDir string `koanf:"-"`
	// HTTPAddr and Version are published in the gossip metadata so that
	// other nodes can show them (and reach this node's HTTP API).
	HTTPAddr string `koanf:"-"`
	Version  string `koanf:"-"`
	// Services names the services (Sentinel master names) this node
	// serves; filled by node. The first is the default service: writes
	// that name no service go to it, and so do the route, admin states and
	// failovers of a Raft log or snapshot written by a single-service
	// release, so it must be the same on every node (the old
	// redis.master_name). Empty = one service, DefaultServiceName.
	Services []string `koanf:"-"`
	// VIPServices names the services whose own VIP this node may hold
	// (netlink mode); filled by node. Its routed notes say so, and a
	// leader grants such a service's lease to another node only if that
	// node says so (GrantLease).
	VIPServices []string `koanf:"-"`

	// Bind is the gossip (memberlist) TCP+UDP address, "ip:port" or ":port".
	Bind string `koanf:"bind"`
	// Advertise is the gossip address other nodes use ("ip" or "ip:port");
	// empty = the bind IP, or this host's private IP when bind is 0.0.0.0.
	Advertise string `koanf:"advertise"`
	// RaftBind is the Raft TCP address, "ip:port" or ":port".
	RaftBind string `koanf:"raft_bind"`
	// RaftAdvertise is the Raft address other nodes dial ("ip" or
	// "ip:port"); empty = the gossip advertise IP with the RaftBind port.
	RaftAdvertise string `koanf:"raft_advertise"`
	// Join lists gossip addresses of other nodes ("host" or "host:port");
	// joined with backoff at start. One reachable seed is enough.
	Join []string `koanf:"join"`
	// BootstrapExpect is the number of servers to wait for before
	// bootstrapping a new cluster. 0 = never bootstrap (a running leader
	// adds this node).
	BootstrapExpect int `koanf:"bootstrap_expect"`
	// Encrypt is the cluster key, base64 (16, 24 or 32 bytes; `redhaven
	// keygen` prints one): memberlist encrypts and authenticates gossip
	// with it, and every node derives the same Raft CA from it (tls.go).
	// It is the primary key: it encrypts gossip and signs this node's Raft
	// certificate.
	Encrypt string `koanf:"encrypt"`
	// EncryptKeys are extra accepted cluster keys (secondary keyring
	// entries) for a rotation: gossip encrypted with any of them is read,
	// and a Raft certificate signed by the CA of any of them is accepted.
	EncryptKeys []string `koanf:"encrypt_keys"`
	// TLS is the operator's PKI for Raft, instead of the CA derived from
	// the cluster key.
	TLS TLSConfig `koanf:"tls"`
	// Insecure allows a multi-node cluster without a cluster key or TLS
	// files (plain text, anyone who reaches the ports can join and write
	// the route). For a lab only; warned at every start.
	Insecure bool `koanf:"insecure"`
	// LeaveOnTerminate makes Run leave the cluster gracefully (the
	// configuration shrinks) when its context ends.
	LeaveOnTerminate bool `koanf:"leave_on_terminate"`
	// DeadServerCleanup removes a voter whose gossip member has been failed
	// for longer than this, when that keeps quorum safe. 0 = off.
	DeadServerCleanup time.Duration `koanf:"dead_server_cleanup"`

	// Raft timings. The defaults elect a new leader within about 1 s of
	// the leader's death on a LAN (DESIGN.md "Timings").
	HeartbeatTimeout   time.Duration `koanf:"heartbeat_timeout"`
	ElectionTimeout    time.Duration `koanf:"election_timeout"`
	LeaderLeaseTimeout time.Duration `koanf:"leader_lease_timeout"`
	// ContactBound is how long a node stays "in contact" (may route writes)
	// after its last confirmed contact with the quorum: for a follower the
	// last message from the leader, for the leader the start of its last
	// successful leadership check. Keep it <= HeartbeatTimeout so that an
	// isolated node stops routing before the majority can elect a new
	// leader.
	ContactBound time.Duration `koanf:"contact_bound"`
	// VIPLease is how long one renewal of the VIP lease lasts; the holder
	// renews every quarter of it. After the holder's death another node
	// takes the VIP about VIPLease*(1+LeaseSkew) after the last renewal.
	VIPLease time.Duration `koanf:"vip_lease"`
}

// TLSConfig names the operator's PEM files for Raft mutual TLS. All three
// or none. The files are read again when they change (checked at each
// handshake) and by Agent.Reload.
type TLSConfig struct {
	CAFile   string `koanf:"ca_file"`   // CA bundle that signs every node's certificate
	CertFile string `koanf:"cert_file"` // this node's certificate (CN or a DNS SAN = node_name)
	KeyFile  string `koanf:"key_file"`  // its private key
}

// Enabled reports whether the operator's PKI is configured.
func (t TLSConfig) Enabled() bool { return t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" }

// MultiNode reports whether the configuration forms or joins a cluster of
// more than one node: bootstrap_expect > 1, bootstrap_expect 0 (never
// bootstrap: wait to be added to a running cluster) or a join list.
func (c Config) MultiNode() bool { return c.BootstrapExpect != 1 || len(c.Join) > 0 }

// Secured reports whether Raft (and, with a key, gossip) is authenticated:
// a cluster key or the operator's TLS files.
func (c Config) Secured() bool { return c.Encrypt != "" || c.TLS.Enabled() }

// DefaultConfig returns the defaults from DESIGN.md. NodeName and DataDir
// are left for node to fill.
func DefaultConfig() Config {
	return Config{
		Bind:               ":" + strconv.Itoa(DefaultGossipPort),
		RaftBind:           ":" + strconv.Itoa(DefaultRaftPort),
		BootstrapExpect:    3,
		HeartbeatTimeout:   300 * time.Millisecond,
		ElectionTimeout:    300 * time.Millisecond,
		LeaderLeaseTimeout: 300 * time.Millisecond,
		ContactBound:       300 * time.Millisecond,
		VIPLease:           time.Second,
	}
}

// DefaultServiceName is the service when Config.Services is empty
// (Sentinel's usual master name, and redis.master_name's default).
const DefaultServiceName = "mymaster"

// ServiceNames returns Services, or the one DefaultServiceName.
func (c Config) ServiceNames() []string {
	if len(c.Services) == 0 {
		return []string{DefaultServiceName}
	}
	return c.Services
}

// DefaultService is the first service.
func (c Config) DefaultService() string { return c.ServiceNames()[0] }

// maxMetaText bounds the free text put in the gossip metadata so it stays
// well within memberlist.MetaMaxSize (512 bytes) once JSON-encoded.
const maxMetaText = 380

// Validate checks the configuration; errors name the offending key.
func (c Config) Validate() error {
	var errs []error
	add := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("cluster.%s: %s", key, fmt.Sprintf(format, args...)))
	}
	if c.NodeName == "" {
		errs = append(errs, errors.New("node_name: must not be empty"))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("data_dir: must not be empty"))
	}
	if len(c.NodeName)+len(c.HTTPAddr)+len(c.Version) > maxMetaText {
		errs = append(errs, fmt.Errorf("node_name: name, http address and version together exceed %d bytes of gossip metadata", maxMetaText))
	}
	seen := map[string]bool{}
	for i, s := range c.Services {
		if s == "" || seen[s] {
			errs = append(errs, fmt.Errorf("services[%d]: service name %q is empty or repeated", i, s))
		}
		seen[s] = true
	}
	if _, _, err := splitBind(c.Bind); err != nil {
		add("bind", "%v", err)
	}
	if _, _, err := splitBind(c.RaftBind); err != nil {
		add("raft_bind", "%v", err)
	}
	if c.Advertise != "" {
		if _, _, err := splitAdvertise(c.Advertise, 1); err != nil {
			add("advertise", "%v", err)
		}
	}
	if c.RaftAdvertise != "" {
		if _, _, err := splitAdvertise(c.RaftAdvertise, 1); err != nil {
			add("raft_advertise", "%v", err)
		}
	}
	for i, j := range c.Join {
		if _, err := joinAddr(j); err != nil {
			add(fmt.Sprintf("join[%d]", i), "%v", err)
		}
	}
	if c.BootstrapExpect < 0 {
		add("bootstrap_expect", "must be >= 0, got %d", c.BootstrapExpect)
	}
	if _, err := decodeKey(c.Encrypt); err != nil {
		add("encrypt", "%v", err)
	}
	for i, k := range c.EncryptKeys {
		if k == "" {
			add(fmt.Sprintf("encrypt_keys[%d]", i), "empty key")
		} else if _, err := decodeKey(k); err != nil {
			add(fmt.Sprintf("encrypt_keys[%d]", i), "%v", err)
		}
	}
	if len(c.EncryptKeys) > 0 && c.Encrypt == "" {
		add("encrypt_keys", "extra keys need a primary key in cluster.encrypt")
	}
	if t := c.TLS; t.Enabled() && (t.CAFile == "" || t.CertFile == "" || t.KeyFile == "") {
		add("tls", "ca_file, cert_file and key_file go together (got ca_file %q, cert_file %q, key_file %q)",
			t.CAFile, t.CertFile, t.KeyFile)
	}
	if c.MultiNode() && !c.Secured() && !c.Insecure {
		add("encrypt", "a cluster of more than one node (bootstrap_expect %d, join %v) needs a cluster key: "+
			"create one with `redhaven keygen` and set the same cluster.encrypt on every node "+
			"(or set cluster.tls.ca_file, cert_file and key_file; cluster.insecure: true allows plain text in a lab)",
			c.BootstrapExpect, c.Join)
	}
	if c.DeadServerCleanup < 0 {
		add("dead_server_cleanup", "must be >= 0, got %s", c.DeadServerCleanup)
	}
	if c.HeartbeatTimeout < 5*time.Millisecond {
		add("heartbeat_timeout", "must be >= 5ms, got %s", c.HeartbeatTimeout)
	}
	if c.ElectionTimeout < c.HeartbeatTimeout {
		add("election_timeout", "must be >= heartbeat_timeout (%s), got %s", c.HeartbeatTimeout, c.ElectionTimeout)
	}
	if c.LeaderLeaseTimeout < 5*time.Millisecond || c.LeaderLeaseTimeout > c.HeartbeatTimeout {
		add("leader_lease_timeout", "must be between 5ms and heartbeat_timeout (%s), got %s", c.HeartbeatTimeout, c.LeaderLeaseTimeout)
	}
	if c.ContactBound <= 0 {
		add("contact_bound", "must be > 0, got %s", c.ContactBound)
	}
	if c.VIPLease < 100*time.Millisecond || c.VIPLease > time.Minute {
		add("vip_lease", "must be between 100ms and 1m, got %s", c.VIPLease)
	}
	return errors.Join(errs...)
}

// splitBind parses "ip:port" or ":port"; an empty host means all addresses.
func splitBind(s string) (net.IP, int, error) {
	host, portS, err := net.SplitHostPort(s)
	if err != nil {
		return nil, 0, fmt.Errorf("%q is not ip:port or :port: %w", s, err)
	}
	port, err := strconv.Atoi(portS)
	if err != nil || port < 0 || port > 65535 {
		return nil, 0, fmt.Errorf("%q: bad port %q", s, portS)
	}
	if host == "" {
		return net.IPv4zero, port, nil
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return nil, 0, fmt.Errorf("%q: host must be an IP address", s)
	}
	return ip, port, nil
}

// splitAdvertise parses "ip" or "ip:port"; a missing port is defPort. The IP
// must be concrete (not 0.0.0.0 or ::).
func splitAdvertise(s string, defPort int) (net.IP, int, error) {
	host, port := s, defPort
	if h, p, err := net.SplitHostPort(s); err == nil {
		host = h
		port, err = strconv.Atoi(p)
		if err != nil || port <= 0 || port > 65535 {
			return nil, 0, fmt.Errorf("%q: bad port %q", s, p)
		}
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return nil, 0, fmt.Errorf("%q: host must be an IP address", s)
	}
	if ip.IsUnspecified() {
		return nil, 0, fmt.Errorf("%q: cannot advertise an unspecified address", s)
	}
	return ip, port, nil
}

// joinAddr normalises a join entry to host:port (default gossip port).
func joinAddr(s string) (string, error) {
	if s == "" {
		return "", errors.New("empty address")
	}
	if h, p, err := net.SplitHostPort(s); err == nil {
		if h == "" {
			return "", fmt.Errorf("%q: missing host", s)
		}
		if n, err := strconv.Atoi(p); err != nil || n <= 0 || n > 65535 {
			return "", fmt.Errorf("%q: bad port %q", s, p)
		}
		return s, nil
	}
	return net.JoinHostPort(s, strconv.Itoa(DefaultGossipPort)), nil
}

// decodeKey decodes a cluster key; "" means none.
func decodeKey(s string) ([]byte, error) {
	if s == "" {
		return nil, nil
	}
	key, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("not valid base64: %w", err)
	}
	switch len(key) {
	case 16, 24, 32:
		return key, nil
	}
	return nil, fmt.Errorf("key is %d bytes, must be 16, 24 or 32 (use `redhaven keygen`)", len(key))
}

// GenerateKey returns a new random 32-byte cluster key, base64-encoded, for
// cluster.encrypt.
func GenerateKey() (string, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return "", fmt.Errorf("generate cluster key: %w", err)
	}
	return base64.StdEncoding.EncodeToString(key), nil
}
