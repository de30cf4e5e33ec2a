package redistest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// TLS is a test CA and a certificate it signed for 127.0.0.1 and
// localhost (usable by servers and as a client certificate), in files
// under Dir. Pass it in ServerOptions or SetOptions to run Redis and
// Sentinel on TLS only (port 0, tls-port, tls-replication yes).
type TLS struct {
	Dir      string
	CAFile   string
	CertFile string // server and client certificate, signed by the CA
	KeyFile  string
	Pool     *x509.CertPool

	ca     *x509.Certificate
	caKey  *ecdsa.PrivateKey
	serial atomic.Int64
}

// NewTLS makes a CA and one certificate in a temporary directory.
func NewTLS(t testing.TB) *TLS {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "redhaven test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	x := &TLS{Dir: t.TempDir(), ca: ca, caKey: key, Pool: x509.NewCertPool()}
	x.serial.Store(1)
	x.Pool.AddCert(ca)
	x.CAFile = filepath.Join(x.Dir, "ca.crt")
	writePEM(t, x.CAFile, "CERTIFICATE", der)
	x.CertFile, x.KeyFile = x.Issue(t, "server", "redhaven test server")
	return x
}

// Issue writes a new certificate signed by the CA, for 127.0.0.1 and
// localhost, with that common name, as name.crt and name.key.
func (x *TLS) Issue(t testing.TB, name, commonName string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(x.serial.Add(1)),
		Subject:      pkix.Name{CommonName: commonName},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, x.ca, &key.PublicKey, x.caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(x.Dir, name+".crt"), filepath.Join(x.Dir, name+".key")
	writePEM(t, keyFile, "EC PRIVATE KEY", kder)
	writePEM(t, certFile, "CERTIFICATE", der)
	return certFile, keyFile
}

// ClientConfig trusts the CA and presents the certificate (Redis's
// tls-auth-clients is optional here, so the certificate is not needed).
func (x *TLS) ClientConfig() *tls.Config {
	cert, err := tls.LoadX509KeyPair(x.CertFile, x.KeyFile)
	if err != nil {
		panic(err)
	}
	return &tls.Config{RootCAs: x.Pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
}

// serverArgs are redis-server's arguments for TLS only on port.
func (x *TLS) serverArgs(port string) []string {
	return []string{
		"--port", "0", "--tls-port", port,
		"--tls-cert-file", x.CertFile, "--tls-key-file", x.KeyFile, "--tls-ca-cert-file", x.CAFile,
		"--tls-auth-clients", "optional", "--tls-replication", "yes",
	}
}

// sentinelConf is the same for a sentinel.conf.
func (x *TLS) sentinelConf(port int) []string {
	return []string{
		"port 0", "tls-port " + itoa(port),
		"tls-cert-file " + x.CertFile, "tls-key-file " + x.KeyFile, "tls-ca-cert-file " + x.CAFile,
		"tls-auth-clients optional", "tls-replication yes",
	}
}

func writePEM(t testing.TB, path, typ string, der []byte) {
	t.Helper()
	// Written to a temporary file and renamed, as certificate tools do:
	// a reader never sees half a file.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
