package topology

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"time"
)

// TLSConfig is redis.tls: TLS for every connection to Redis and to
// Sentinel (the watcher's here, and the proxy's backend connections,
// which node configures with ClientConfig).
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

// ClientConfig reads the files and returns the client TLS configuration;
// nil when redis.tls is off. The files are read once (at start).
func (c TLSConfig) ClientConfig() (*tls.Config, error) {
	if !c.Enabled {
		return nil, nil
	}
	minV, err := parseTLSVersion(c.MinVersion)
	if err != nil {
		return nil, fmt.Errorf("redis.tls.min_version: %w", err)
	}
	cfg := &tls.Config{MinVersion: minV, ServerName: c.ServerName}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("redis.tls.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("redis.tls.ca_file: %s: no PEM certificate in it", c.CAFile)
		}
		cfg.RootCAs = pool
	}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("redis.tls.cert_file/key_file: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// clientTLSFor is cfg for a connection to addr: without an explicit
// server name the certificate is verified against addr's host.
func clientTLSFor(cfg *tls.Config, addr string) *tls.Config {
	if cfg.ServerName != "" {
		return cfg
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	c := cfg.Clone()
	c.ServerName = host
	return c
}

// startTLS runs the client handshake on nc within timeout.
func startTLS(ctx context.Context, nc net.Conn, addr string, cfg *tls.Config, timeout time.Duration) (net.Conn, error) {
	tc := tls.Client(nc, clientTLSFor(cfg, addr))
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		_ = nc.Close()
		return nil, fmt.Errorf("TLS handshake with %s: %w", addr, err)
	}
	return tc, nil
}
