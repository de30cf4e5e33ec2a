package topology

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
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
	waitTopology(t, w, set.Master.Addr, redistest.Addrs(set.Replicas))
	o := waitSentinels(t, w, set.Master.Addr)
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

// TestClientTLSReload: redis.tls's files change under a ClientTLS. A
// good reload swaps the client certificate and the CAs the servers are
// verified against; a missing or broken file is an error naming it, and
// the files loaded before stay in use. (The handshakes themselves, with a
// real redis-server, are node's TestAgentRedisTLSReload.)
func TestClientTLSReload(t *testing.T) {
	ca1, ca2 := redistest.NewTLS(t), redistest.NewTLS(t)
	dir := t.TempDir()
	cfg := TLSConfig{Enabled: true, CAFile: filepath.Join(dir, "ca.crt"), CertFile: filepath.Join(dir, "c.crt"), KeyFile: filepath.Join(dir, "c.key")}
	put := func(x *redistest.TLS) {
		c, k := x.Issue(t, "client", "client")
		for from, to := range map[string]string{x.CAFile: cfg.CAFile, c: cfg.CertFile, k: cfg.KeyFile} {
			writeFile(t, to, readFile(t, from))
		}
	}
	put(ca1)
	ct, err := cfg.NewClientTLS()
	if err != nil {
		t.Fatal(err)
	}
	server1, server2 := connState(t, ca1.CertFile), connState(t, ca2.CertFile)
	check := func(what string, want *redistest.TLS) {
		t.Helper()
		c := ct.For("127.0.0.1:6379")
		cert, err := c.GetClientCertificate(nil)
		if err != nil || !issuedBy(t, cert.Certificate[0], want) {
			t.Errorf("%s: the client certificate is not the one of the expected CA (%v)", what, err)
		}
		other := server2
		mine := server1
		if want == ca2 {
			mine, other = server2, server1
		}
		if err := c.VerifyConnection(mine); err != nil {
			t.Errorf("%s: the server certificate of the CA in use: %v", what, err)
		}
		if err := c.VerifyConnection(other); err == nil {
			t.Errorf("%s: a server certificate of the other CA is trusted", what)
		}
	}
	check("at start", ca1)
	// The name verified is the host dialled: the certificates are for
	// 127.0.0.1 and localhost only.
	if err := ct.For("localhost:6379").VerifyConnection(server1); err != nil {
		t.Errorf("localhost: %v", err)
	}
	if err := ct.For("10.0.0.1:6379").VerifyConnection(server1); err == nil {
		t.Error("a certificate for 127.0.0.1 verifies for 10.0.0.1")
	}

	writeFile(t, cfg.CertFile, []byte("not a certificate"))
	if err := ct.Reload(); err == nil || !strings.Contains(err.Error(), cfg.CertFile) {
		t.Errorf("broken cert_file: %v (want an error naming %s)", err, cfg.CertFile)
	}
	check("after a broken cert_file", ca1)
	if err := os.Remove(cfg.CAFile); err != nil {
		t.Fatal(err)
	}
	if changed, err := ct.ReloadIfChanged(); changed || err == nil || !strings.Contains(err.Error(), cfg.CAFile) {
		t.Errorf("missing ca_file: changed %v, %v (want an error naming %s)", changed, err, cfg.CAFile)
	}
	if changed, err := ct.ReloadIfChanged(); changed || err != nil {
		t.Errorf("missing ca_file, polled again: changed %v, %v (reported once)", changed, err)
	}
	check("after a missing ca_file", ca1)

	put(ca2)
	if changed, err := ct.ReloadIfChanged(); !changed || err != nil {
		t.Fatalf("rotated files: changed %v, %v", changed, err)
	}
	check("after the rotation", ca2)
}

// connState is what a client sees of a server presenting certFile.
func connState(t *testing.T, certFile string) tls.ConnectionState {
	t.Helper()
	block, _ := pem.Decode(readFile(t, certFile))
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert}}
}

func issuedBy(t *testing.T, der []byte, x *redistest.TLS) bool {
	t.Helper()
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	_, err = cert.Verify(x509.VerifyOptions{Roots: x.Pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	return err == nil
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// writeFile replaces path by a rename, as certificate tools do.
func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path+".tmp", b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
}
