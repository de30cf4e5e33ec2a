package topology

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// TLSConfig is redis.tls: TLS for every connection to Redis and to
// Sentinel (the watcher's here, and the proxy's backend connections,
// which node configures with NewClientTLS).
type TLSConfig struct {
	// Enabled turns TLS on towards Redis and Sentinel.
	Enabled bool `koanf:"enabled"`
	// CAFile holds the CAs the servers' certificates must chain to; ""
	// uses the system's roots.
	CAFile string `koanf:"ca_file"`
	// CertFile and KeyFile are an optional client certificate (for
	// Redis's tls-auth-clients).
	CertFile string `koanf:"cert_file"`
	KeyFile  string `koanf:"key_file"`
	// ServerName is the name every server certificate is verified
	// against. "" verifies each against the address dialled (Sentinel
	// reports IP addresses: then the certificates need IP SANs).
	ServerName string `koanf:"server_name"`
	// MinVersion is "1.2" or "1.3".
	MinVersion string `koanf:"min_version"`
}

func (c TLSConfig) validate() []error {
	if !c.Enabled {
		return nil
	}
	var errs []error
	if (c.CertFile == "") != (c.KeyFile == "") {
		errs = append(errs, errors.New("redis.tls.cert_file, redis.tls.key_file: set both or neither"))
	}
	if _, err := parseTLSVersion(c.MinVersion); err != nil {
		errs = append(errs, fmt.Errorf("redis.tls.min_version: %w", err))
	}
	return errs
}

func parseTLSVersion(v string) (uint16, error) {
	switch v {
	case "", "1.2":
		return tls.VersionTLS12, nil
	case "1.3":
		return tls.VersionTLS13, nil
	}
	return 0, fmt.Errorf("%q is not a supported TLS version (want 1.2 or 1.3)", v)
}

// ClientTLS is redis.tls's client side for every connection to Redis and
// Sentinel: its CA pool and client certificate are read at start and
// again by Reload (SIGHUP) or ReloadIfChanged (the files' size or mtime
// changed). Handshakes after a reload use the new files; connections
// made before keep their session.
type ClientTLS struct {
	cfg  TLSConfig
	minV uint16
	mu   sync.Mutex // one reload at a time; guards stamp
	// stamp is the files' sizes and mtimes at the last load attempt.
	stamp string
	cur   atomic.Pointer[clientFiles]
}

// clientFiles is what one load of the files gave.
type clientFiles struct {
	roots *x509.CertPool   // nil: the system's roots
	cert  *tls.Certificate // nil: no client certificate
}

// NewClientTLS reads the files and returns the reloadable client
// configuration; nil when redis.tls is off.
func (c TLSConfig) NewClientTLS() (*ClientTLS, error) {
	if !c.Enabled {
		return nil, nil
	}
	minV, err := parseTLSVersion(c.MinVersion)
	if err != nil {
		return nil, fmt.Errorf("redis.tls.min_version: %w", err)
	}
	t := &ClientTLS{cfg: c, minV: minV}
	if err := t.Reload(); err != nil {
		return nil, err
	}
	return t, nil
}

// For is the configuration of one connection to addr ("host:port"). The
// server's certificate is verified against redis.tls.server_name, else
// addr's host, with the CA pool of the moment; the client certificate
// is the one of the moment.
func (t *ClientTLS) For(addr string) *tls.Config {
	name := t.cfg.ServerName
	if name == "" {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			host = addr
		}
		name = host
	}
	c := &tls.Config{
		MinVersion: t.minV,
		ServerName: name,
		// The built-in verification would use a RootCAs fixed when the
		// connection is configured; verify checks the same chain and
		// name against the pool a reload may since have swapped (and a
		// client does not see an IP address it dialled in
		// ConnectionState.ServerName: the name is bound here).
		InsecureSkipVerify: true,
		VerifyConnection:   func(cs tls.ConnectionState) error { return t.verify(cs, name) },
	}
	if t.cfg.CertFile != "" {
		c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return t.cur.Load().cert, nil
		}
	}
	return c
}

// verify checks the server's chain against the current CA pool and its
// certificate against name, as crypto/tls would.
func (t *ClientTLS) verify(cs tls.ConnectionState, name string) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("redis.tls: the server sent no certificate")
	}
	opts := x509.VerifyOptions{Roots: t.cur.Load().roots, DNSName: name, Intermediates: x509.NewCertPool()}
	for _, c := range cs.PeerCertificates[1:] {
		opts.Intermediates.AddCert(c)
	}
	_, err := cs.PeerCertificates[0].Verify(opts)
	return err
}

// Reload reads the files again. On an error (the message names the key
// and the file) the files loaded before stay in use.
func (t *ClientTLS) Reload() error {
	_, err := t.reload(true)
	return err
}

// ReloadIfChanged is Reload when a file's size or mtime changed since
// the last attempt (a failed load is not retried until they change
// again: a half-written file is retried when the write completes).
func (t *ClientTLS) ReloadIfChanged() (bool, error) { return t.reload(false) }

func (t *ClientTLS) reload(force bool) (bool, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	stamp, err := t.fileStamp()
	if err != nil {
		stamp = "error: " + err.Error() // a missing file is reported once, not on every poll
	}
	if !force && stamp == t.stamp {
		return false, nil
	}
	t.stamp = stamp
	if err != nil {
		return false, err
	}
	f, err := t.cfg.load()
	if err != nil {
		return false, err
	}
	t.cur.Store(f)
	return true, nil
}

// fileStamp describes the files' current versions.
func (t *ClientTLS) fileStamp() (string, error) {
	s := ""
	for _, f := range [][2]string{{"ca_file", t.cfg.CAFile}, {"cert_file", t.cfg.CertFile}, {"key_file", t.cfg.KeyFile}} {
		if f[1] == "" {
			continue
		}
		fi, err := os.Stat(f[1])
		if err != nil {
			return "", fmt.Errorf("redis.tls.%s: %w", f[0], err)
		}
		s += fmt.Sprintf("%s:%d:%d;", f[1], fi.Size(), fi.ModTime().UnixNano())
	}
	return s, nil
}

// load reads the CA file and the client certificate.
func (c TLSConfig) load() (*clientFiles, error) {
	f := &clientFiles{}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("redis.tls.ca_file: %w", err)
		}
		f.roots = x509.NewCertPool()
		if !f.roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("redis.tls.ca_file: %s: no PEM certificate in it", c.CAFile)
		}
	}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("redis.tls.cert_file %s, key_file %s: %w", c.CertFile, c.KeyFile, err)
		}
		f.cert = &cert
	}
	return f, nil
}

// startTLS runs the client handshake on nc within timeout.
func startTLS(ctx context.Context, nc net.Conn, addr string, cfg *tls.Config, timeout time.Duration) (net.Conn, error) {
	tc := tls.Client(nc, cfg)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		_ = nc.Close()
		return nil, fmt.Errorf("TLS handshake with %s: %w", addr, err)
	}
	return tc, nil
}
