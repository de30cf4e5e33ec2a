package cluster_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redhaven/redhaven/cluster"
	"github.com/redhaven/redhaven/cluster/clustertest"
)

// testCA is an operator's CA for the PKI tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T) testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ops ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return testCA{cert, key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue writes name's certificate and key into dir and returns the
// cluster.TLSConfig that names them (and the CA file).
func (ca testCA) issue(t *testing.T, dir, name string) cluster.TLSConfig {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	files := cluster.TLSConfig{CAFile: filepath.Join(dir, "ca.pem"), CertFile: filepath.Join(dir, "node.pem"), KeyFile: filepath.Join(dir, "node.key")}
	for path, b := range map[string][]byte{
		files.CAFile:   ca.pem,
		files.CertFile: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		files.KeyFile:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}),
	} {
		// write then rename: a reader never sees a half-written file
		if err := os.WriteFile(path+".tmp", b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(path+".tmp", path); err != nil {
			t.Fatal(err)
		}
	}
	return files
}

// TestOperatorPKI: a cluster on the operator's certificates (no cluster
// key) forms and commits; a certificate for another name is refused at
// start; a node whose files are replaced by ones from another CA is cut
// off from Raft (the files are re-read at the next handshake) and comes
// back when the right ones return.
func TestOperatorPKI(t *testing.T) {
	ca := newTestCA(t)
	dirs := make([]string, 3)
	c := clustertest.New(t, 3, clustertest.Options{Insecure: true, Configure: func(i int, cfg *cluster.Config) {
		cfg.Insecure = false // secured by the TLS files, not by a key
		dirs[i] = t.TempDir()
		cfg.TLS = ca.issue(t, dirs[i], cfg.NodeName)
	}})
	bad := c.Nodes[0].Config
	bad.TLS = ca.issue(t, t.TempDir(), "someone-else")
	if _, err := cluster.New(bad, nil); err == nil || !strings.Contains(err.Error(), "cluster.tls.cert_file") {
		t.Fatalf("New with a certificate for another name = %v", err)
	}
	c.StartAll()
	l := c.WaitLeader(formTimeout)
	waitVoters(t, c, names(3)...)
	if !c.Nodes[l].Logs.Contains("raft_tls=operator_pki") {
		t.Fatal("agent did not log operator_pki")
	}
	if err := c.Nodes[l].Agent.ProposeRoute(ctxT(t), svc, cluster.RouteDecision{Master: "m1:6379", Epoch: 1}); err != nil {
		t.Fatal(err)
	}
	waitRoute(t, c, "m1:6379", 1)

	// A follower's files are swapped for another CA's: its peers refuse it.
	f := (l + 1) % 3
	other := newTestCA(t)
	other.issue(t, dirs[f], c.Nodes[f].Config.NodeName)
	if err := c.Nodes[f].Agent.Reload(); err != nil {
		t.Fatal(err)
	}
	c.Nodes[f].Agent.Isolate(true) // close its open connections...
	c.Nodes[f].Agent.Isolate(false)
	clustertest.Eventually(t, formTimeout, "peers refuse the follower's new certificate", func() bool {
		return rejected(c.Nodes[l].Agent, "raft", cluster.RejectUntrusted) > 0
	})
	if err := c.Nodes[l].Agent.ProposeRoute(ctxT(t), svc, cluster.RouteDecision{Master: "m2:6379", Epoch: 2}); err != nil {
		t.Fatal(err) // the two others are a quorum
	}
	// Back to the right CA: picked up at the next handshake (mtime).
	ca.issue(t, dirs[f], c.Nodes[f].Config.NodeName)
	// Raft backs off replication to a follower that kept failing (10 ms
	// doubling up to ~41 s): under load the refused phase lasts long
	// enough that the next attempt can be 20-40 s away.
	clustertest.Eventually(t, 90*time.Second, "route m2:6379@2 on every node once the follower's certificate is right again", func() bool {
		for _, a := range c.Running() {
			if r := a.State().Service(svc).Route; r.Master != "m2:6379" || r.Epoch != 2 {
				return false
			}
		}
		return true
	})
	waitAllInContact(t, c)
}
