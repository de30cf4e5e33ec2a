package webui

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Roles a user may have.
const (
	RoleRead  = "read"  // may read the page and the APIs
	RoleAdmin = "admin" // may also act: backend state, failover, leadership
)

// Config is the `http` section of the configuration.
type Config struct {
	// Listen is the address of the stats page, API, metrics and health
	// endpoints.
	Listen string `koanf:"listen"`
	// Auth lists the users allowed in. Empty: read-only page, open to all.
	Auth []User `koanf:"auth"`
	// TLSCert and TLSKey are PEM files; both set switches to HTTPS.
	TLSCert string `koanf:"tls_cert"`
	TLSKey  string `koanf:"tls_key"`
	// DefaultRefresh is the page's auto-refresh interval when the URL names
	// none (?refresh=N); 0 means no auto refresh.
	DefaultRefresh time.Duration `koanf:"refresh"`
	// AdminSocket is the Unix socket of the local CLI (mode 0660, the
	// agent's group): every request over it is an admin. "" disables it.
	AdminSocket string `koanf:"admin_socket"`
	// AllowedHosts are extra names (or name:port) that POSTs may carry in
	// Host and Origin, e.g. the name of a reverse proxy in front of the
	// page. The listen address, loopback names with the listen port and the
	// node's own addresses and host name are always allowed.
	AllowedHosts []string `koanf:"allowed_hosts"`
}

// DefaultAdminSocket is where the agent serves, and the CLI looks for, the
// admin socket (systemd's RuntimeDirectory=redhaven makes /run/redhaven).
const DefaultAdminSocket = "/run/redhaven/admin.sock"

// User is one basic-auth user.
type User struct {
	Name         string `koanf:"name"`
	PasswordHash string `koanf:"password_hash"` // bcrypt, see HashPassword
	Role         string `koanf:"role"`          // RoleRead or RoleAdmin
}

// DefaultConfig returns the defaults: listen on :8404, no users (read-only
// over TCP), plain HTTP, refresh every 10 seconds, the admin socket at
// DefaultAdminSocket.
func DefaultConfig() Config {
	return Config{Listen: ":8404", DefaultRefresh: 10 * time.Second, AdminSocket: DefaultAdminSocket}
}

// Validate checks the config and names the bad key in each error.
func (c Config) Validate() error {
	var errs []error
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		errs = append(errs, fmt.Errorf("http.listen: bad address %q: want host:port or :port", c.Listen))
	}
	seen := map[string]bool{}
	for i, u := range c.Auth {
		key := fmt.Sprintf("http.auth[%d]", i)
		switch {
		case u.Name == "":
			errs = append(errs, fmt.Errorf("%s.name: must not be empty", key))
		case strings.ContainsAny(u.Name, ":\r\n"):
			errs = append(errs, fmt.Errorf("%s.name: %q must not contain ':' or line breaks", key, u.Name))
		case seen[u.Name]:
			errs = append(errs, fmt.Errorf("%s.name: duplicate user %q", key, u.Name))
		}
		seen[u.Name] = true
		if _, err := bcrypt.Cost([]byte(u.PasswordHash)); err != nil {
			errs = append(errs, fmt.Errorf("%s.password_hash: not a bcrypt hash (make one with: redhaven passwd)", key))
		}
		if u.Role != RoleRead && u.Role != RoleAdmin {
			errs = append(errs, fmt.Errorf("%s.role: %q: want %q or %q", key, u.Role, RoleRead, RoleAdmin))
		}
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, errors.New("http.tls_cert, http.tls_key: set both or neither"))
	}
	if c.DefaultRefresh < 0 {
		errs = append(errs, fmt.Errorf("http.refresh: must not be negative, got %v", c.DefaultRefresh))
	} else if c.DefaultRefresh > 0 && c.DefaultRefresh < time.Second {
		errs = append(errs, fmt.Errorf("http.refresh: must be 0 (off) or at least 1s, got %v", c.DefaultRefresh))
	}
	if c.AdminSocket != "" {
		if !filepath.IsAbs(c.AdminSocket) {
			errs = append(errs, fmt.Errorf("http.admin_socket: %q: want an absolute path, or \"\" to disable the socket", c.AdminSocket))
		} else if len(c.AdminSocket) > maxSocketPath {
			errs = append(errs, fmt.Errorf("http.admin_socket: %q: longer than %d bytes, the limit of a Unix socket path", c.AdminSocket, maxSocketPath))
		}
	}
	for i, h := range c.AllowedHosts {
		if h == "" || strings.ContainsAny(h, "/ \t\r\n") {
			errs = append(errs, fmt.Errorf("http.allowed_hosts[%d]: %q: want a host name or address, optionally with :port", i, h))
		}
	}
	return errors.Join(errs...)
}

// maxSocketPath is the longest Unix socket path Linux accepts (sun_path
// holds 108 bytes with the terminating NUL).
const maxSocketPath = 107

// HashPassword returns the bcrypt hash of pw for http.auth[].password_hash.
func HashPassword(pw string) (string, error) {
	if pw == "" {
		return "", errors.New("hash password: empty password")
	}
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.DefaultCost)
	if err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	return string(h), nil
}
