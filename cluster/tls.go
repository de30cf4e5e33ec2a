package cluster

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"os"
	"slices"
	"sync"
	"time"
)

// Raft mutual TLS. Two sources of certificates:
//
//   - the cluster key (cluster.encrypt): every node derives the same CA
//     from each installed key (caFromKey) and issues itself a leaf signed
//     by the CA of the primary key at start. A peer is accepted with a leaf
//     that chains to the CA of any installed key, so a key rotation works
//     like memberlist's keyring.
//   - the operator's PKI (cluster.tls.*): PEM files, read again when they
//     change on disk (checked at each handshake) or on Reload.
//
// Either way the peer's node name (certificate CN or DNS SAN) is checked
// against the Raft server ID when this node dials a server whose ID it
// knows from the committed configuration.

// caInfo is the fixed HKDF info string; changing it changes every CA.
const caInfo = "redhaven raft ca v1"

// Fixed fields of the derived CA certificate: the same key gives the same
// DER bytes on every node.
var (
	caNotBefore = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	caNotAfter  = time.Date(2124, 1, 1, 0, 0, 0, 0, time.UTC)
)

// keyCA is the CA derived from one cluster key.
type keyCA struct {
	key  []byte
	cert *x509.Certificate
	der  []byte
	priv ed25519.PrivateKey
}

// caFromKey derives the cluster CA from a cluster key: HKDF-SHA256 of the
// key to an Ed25519 seed, then a self-signed certificate with fixed serial,
// validity and subject. Ed25519 signatures are deterministic, so every node
// gets byte-identical DER from the same key.
func caFromKey(key []byte) (keyCA, error) {
	seed, err := hkdf.Key(sha256.New, key, []byte("redhaven"), caInfo, ed25519.SeedSize)
	if err != nil {
		return keyCA{}, fmt.Errorf("derive cluster ca: %w", err)
	}
	priv := ed25519.NewKeyFromSeed(seed)
	pub := priv.Public().(ed25519.PublicKey)
	ski := sha256.Sum256(pub)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "redhaven cluster CA", Organization: []string{"redhaven"}},
		NotBefore:             caNotBefore,
		NotAfter:              caNotAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
		SubjectKeyId:          ski[:20],
	}
	der, err := x509.CreateCertificate(nil, tmpl, tmpl, pub, priv)
	if err != nil {
		return keyCA{}, fmt.Errorf("create cluster ca: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return keyCA{}, fmt.Errorf("parse cluster ca: %w", err)
	}
	return keyCA{key: key, cert: cert, der: der, priv: priv}, nil
}

// leafValidity is how long an issued leaf is valid; a restart issues a new
// one.
const leafValidity = 10 * 365 * 24 * time.Hour

// issueLeaf makes a fresh Ed25519 key and a certificate for node name
// signed by ca (CN and DNS SAN = name, client and server use).
func issueLeaf(ca keyCA, name string) (tls.Certificate, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("generate raft key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("raft certificate serial: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name, Organization: []string{"redhaven"}},
		DNSNames:     []string{name},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(leafValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.priv)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("issue raft certificate for %s: %w", name, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der, ca.der}, PrivateKey: priv, Leaf: leaf}, nil
}

// Reasons a Raft connection is rejected (the reason label of
// redhaven_cluster_rejected_connections_total).
const (
	RejectNoCertificate = "no_certificate"
	RejectUntrusted     = "untrusted_certificate"
	RejectNameMismatch  = "name_mismatch"
	RejectTimeout       = "timeout"
	RejectNotTLS        = "not_tls"
	RejectHandshake     = "handshake"
	RejectBusy          = "busy"
	RejectDecrypt       = "decrypt" // gossip: message not encrypted with an installed key
)

// rejectError is a peer verification failure with its reason label.
type rejectError struct {
	reason string
	err    error
}

func (e *rejectError) Error() string { return e.err.Error() }
func (e *rejectError) Unwrap() error { return e.err }

// tlsMaterial is one consistent snapshot: whom to trust, who we are.
type tlsMaterial struct {
	roots *x509.CertPool
	cert  tls.Certificate
}

// raftTLS provides the TLS material for the Raft stream layer.
type raftTLS struct {
	name string
	log  *slog.Logger

	mu sync.Mutex
	// key mode
	cas     []keyCA // installed keys' CAs; cas[primary] signs
	primary int
	// file mode
	files  TLSConfig
	stamps []fileStamp
	cur    *tlsMaterial
}

type fileStamp struct {
	mod  time.Time
	size int64
}

// newKeyTLS builds the material from the cluster keys (primary first).
func newKeyTLS(name string, primary []byte, extra [][]byte, log *slog.Logger) (*raftTLS, error) {
	t := &raftTLS{name: name, log: log}
	for _, k := range append([][]byte{primary}, extra...) {
		if t.indexOf(k) >= 0 {
			continue
		}
		ca, err := caFromKey(k)
		if err != nil {
			return nil, err
		}
		t.cas = append(t.cas, ca)
	}
	if err := t.rebuildLocked(); err != nil {
		return nil, err
	}
	return t, nil
}

// newFileTLS loads the operator's PEM files.
func newFileTLS(name string, files TLSConfig, log *slog.Logger) (*raftTLS, error) {
	t := &raftTLS{name: name, log: log, files: files}
	if err := t.Reload(); err != nil {
		return nil, err
	}
	return t, nil
}

func (t *raftTLS) indexOf(key []byte) int {
	return slices.IndexFunc(t.cas, func(c keyCA) bool { return bytes.Equal(c.key, key) })
}

// rebuildLocked issues a new leaf from the primary CA and the root pool of
// every installed CA (key mode).
func (t *raftTLS) rebuildLocked() error {
	leaf, err := issueLeaf(t.cas[t.primary], t.name)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	for _, ca := range t.cas {
		pool.AddCert(ca.cert)
	}
	t.cur = &tlsMaterial{roots: pool, cert: leaf}
	return nil
}

// addKey accepts leaves signed by key's CA (key mode).
func (t *raftTLS) addKey(key []byte) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.files.Enabled() || t.indexOf(key) >= 0 {
		return nil
	}
	ca, err := caFromKey(key)
	if err != nil {
		return err
	}
	t.cas = append(t.cas, ca)
	return t.rebuildLocked()
}

// useKey makes key (installed) the one that signs this node's leaf.
func (t *raftTLS) useKey(key []byte) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.files.Enabled() {
		return nil
	}
	i := t.indexOf(key)
	if i < 0 {
		return fmt.Errorf("%w: install it first", ErrKeyNotInstalled)
	}
	if i == t.primary {
		return nil
	}
	old := t.primary
	t.primary = i
	if err := t.rebuildLocked(); err != nil {
		t.primary = old
		return err
	}
	return nil
}

// removeKey stops accepting key's CA; the primary cannot be removed.
func (t *raftTLS) removeKey(key []byte) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.files.Enabled() {
		return nil
	}
	i := t.indexOf(key)
	switch {
	case i < 0:
		return nil
	case i == t.primary:
		return fmt.Errorf("%w: make another key primary first", ErrPrimaryKey)
	}
	p := t.cas[t.primary].key
	t.cas = slices.Delete(t.cas, i, i+1)
	t.primary = t.indexOf(p)
	pool := x509.NewCertPool()
	for _, ca := range t.cas {
		pool.AddCert(ca.cert)
	}
	t.cur = &tlsMaterial{roots: pool, cert: t.cur.cert}
	return nil
}

// Reload reads the operator's files again (file mode; a no-op with the
// cluster key). On error the previous material stays in use.
func (t *raftTLS) Reload() error {
	if !t.files.Enabled() {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.loadFilesLocked()
}

func (t *raftTLS) loadFilesLocked() error {
	stamps := statFiles(t.files)
	caPEM, err := os.ReadFile(t.files.CAFile)
	if err != nil {
		return fmt.Errorf("cluster.tls.ca_file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return fmt.Errorf("cluster.tls.ca_file: %s holds no PEM certificate", t.files.CAFile)
	}
	cert, err := tls.LoadX509KeyPair(t.files.CertFile, t.files.KeyFile)
	if err != nil {
		return fmt.Errorf("cluster.tls.cert_file/key_file: %w", err)
	}
	if !certHasName(cert.Leaf, t.name) {
		return fmt.Errorf("cluster.tls.cert_file: %s is for %q (DNS names %v), not for node_name %q",
			t.files.CertFile, cert.Leaf.Subject.CommonName, cert.Leaf.DNSNames, t.name)
	}
	if err := verifyChain(cert.Leaf, cert.Certificate[1:], pool); err != nil {
		return fmt.Errorf("cluster.tls.cert_file: %s does not chain to cluster.tls.ca_file %s: %w",
			t.files.CertFile, t.files.CAFile, err)
	}
	t.cur = &tlsMaterial{roots: pool, cert: cert}
	t.stamps = stamps
	return nil
}

func statFiles(f TLSConfig) []fileStamp {
	var out []fileStamp
	for _, p := range []string{f.CAFile, f.CertFile, f.KeyFile} {
		var s fileStamp
		if fi, err := os.Stat(p); err == nil {
			s = fileStamp{mod: fi.ModTime(), size: fi.Size()}
		}
		out = append(out, s)
	}
	return out
}

// material returns the current snapshot; in file mode it reloads first
// when a file changed on disk (a failed reload keeps the old material and
// is logged).
func (t *raftTLS) material() *tlsMaterial {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.files.Enabled() && !slices.Equal(statFiles(t.files), t.stamps) {
		if err := t.loadFilesLocked(); err != nil {
			t.stamps = statFiles(t.files) // do not retry until the files change again
			t.log.Warn("raft tls files changed but could not be loaded, keeping the previous ones", "error", err)
		} else {
			t.log.Info("raft tls files reloaded", "cert_file", t.files.CertFile)
		}
	}
	return t.cur
}

// serverConfig is the TLS config for one accepted connection.
func (t *raftTLS) serverConfig() *tls.Config {
	m := t.material()
	return &tls.Config{
		MinVersion:       tls.VersionTLS13,
		Certificates:     []tls.Certificate{m.cert},
		ClientAuth:       tls.RequireAnyClientCert,
		NextProtos:       []string{adminALPN}, // Raft's own dialer offers none
		VerifyConnection: func(cs tls.ConnectionState) error { return verifyPeer(cs, m.roots, "") },
	}
}

// clientConfig is the TLS config for one dial; name is the expected
// server's node name ("" = unknown: chain only).
func (t *raftTLS) clientConfig(name string) *tls.Config {
	m := t.material()
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		Certificates:       []tls.Certificate{m.cert},
		InsecureSkipVerify: true, // verified by VerifyConnection: our roots, node names
		VerifyConnection:   func(cs tls.ConnectionState) error { return verifyPeer(cs, m.roots, name) },
	}
}

// verifyPeer accepts a peer whose certificate chains to roots and, when
// name is known, is for that node.
func verifyPeer(cs tls.ConnectionState, roots *x509.CertPool, name string) error {
	if len(cs.PeerCertificates) == 0 {
		return &rejectError{RejectNoCertificate, errors.New("peer sent no certificate")}
	}
	leaf := cs.PeerCertificates[0]
	if err := verifyChain(leaf, nil, roots, cs.PeerCertificates[1:]...); err != nil {
		return &rejectError{RejectUntrusted, fmt.Errorf("peer certificate %q: %w", leaf.Subject.CommonName, err)}
	}
	if name != "" && !certHasName(leaf, name) {
		return &rejectError{RejectNameMismatch, fmt.Errorf("peer certificate is for %q, expected %q", leaf.Subject.CommonName, name)}
	}
	return nil
}

func verifyChain(leaf *x509.Certificate, rawInter [][]byte, roots *x509.CertPool, inter ...*x509.Certificate) error {
	ip := x509.NewCertPool()
	for _, c := range inter {
		ip.AddCert(c)
	}
	for _, der := range rawInter {
		if c, err := x509.ParseCertificate(der); err == nil {
			ip.AddCert(c)
		}
	}
	_, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: ip, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	return err
}

// certHasName reports whether the certificate names node name in its CN
// or DNS SANs (exact match: node names need not be host names).
func certHasName(c *x509.Certificate, name string) bool {
	return c != nil && (c.Subject.CommonName == name || slices.Contains(c.DNSNames, name))
}

// KeyCertificate issues a certificate for node name signed by the CA
// derived from a cluster key (base64, as in cluster.encrypt), exactly as an
// agent does at start. For tools and tests that speak Raft's TLS.
func KeyCertificate(key, name string) (tls.Certificate, error) {
	k, err := decodeKey(key)
	if err != nil || k == nil {
		return tls.Certificate{}, fmt.Errorf("cluster key: %v", err)
	}
	ca, err := caFromKey(k)
	if err != nil {
		return tls.Certificate{}, err
	}
	return issueLeaf(ca, name)
}
