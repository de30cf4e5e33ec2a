package cluster

import (
	"bytes"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"testing"
	"time"
)

// TestCAFromKeyDeterministic: the same key gives byte-identical CA DER on
// every call (so on every node); another key gives another CA.
func TestCAFromKeyDeterministic(t *testing.T) {
	k1 := bytes.Repeat([]byte{1}, 32)
	k2 := bytes.Repeat([]byte{2}, 32)
	a, err := caFromKey(k1)
	if err != nil {
		t.Fatal(err)
	}
	b, err := caFromKey(bytes.Clone(k1))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.der, b.der) {
		t.Fatal("same key gave two different CA certificates")
	}
	c, err := caFromKey(k2)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(a.der, c.der) || bytes.Equal(a.cert.PublicKey.(ed25519.PublicKey), c.cert.PublicKey.(ed25519.PublicKey)) {
		t.Fatal("different keys gave the same CA")
	}
	if !a.cert.IsCA || a.cert.SerialNumber.Int64() != 1 || !a.cert.NotBefore.Equal(caNotBefore) || !a.cert.NotAfter.Equal(caNotAfter) {
		t.Fatalf("CA fields: ca=%v serial=%v validity=%v..%v", a.cert.IsCA, a.cert.SerialNumber, a.cert.NotBefore, a.cert.NotAfter)
	}
	// 16- and 24-byte keys (memberlist accepts them) derive too.
	for _, n := range []int{16, 24} {
		if _, err := caFromKey(make([]byte, n)); err != nil {
			t.Fatalf("%d-byte key: %v", n, err)
		}
	}
}

// TestVerifyPeer: a leaf issued from the key's CA is accepted (and its
// name checked); a leaf from another key's CA, no certificate, or the
// wrong name are rejected with their reason.
func TestVerifyPeer(t *testing.T) {
	ca1, _ := caFromKey(bytes.Repeat([]byte{1}, 32))
	ca2, _ := caFromKey(bytes.Repeat([]byte{2}, 32))
	roots := x509.NewCertPool()
	roots.AddCert(ca1.cert)
	good, err := issueLeaf(ca1, "n2")
	if err != nil {
		t.Fatal(err)
	}
	other, _ := issueLeaf(ca2, "n2")
	state := func(c tls.Certificate) tls.ConnectionState {
		return tls.ConnectionState{PeerCertificates: []*x509.Certificate{c.Leaf}}
	}
	tests := []struct {
		name   string
		cs     tls.ConnectionState
		expect string
		reason string // "" = accepted
	}{
		{"own key, any name", state(good), "", ""},
		{"own key, right name", state(good), "n2", ""},
		{"own key, wrong name", state(good), "n3", RejectNameMismatch},
		{"another key", state(other), "", RejectUntrusted},
		{"no certificate", tls.ConnectionState{}, "", RejectNoCertificate},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := verifyPeer(tt.cs, roots, tt.expect)
			var re *rejectError
			switch {
			case tt.reason == "" && err != nil:
				t.Fatalf("rejected: %v", err)
			case tt.reason != "" && (!errors.As(err, &re) || re.reason != tt.reason):
				t.Fatalf("err = %v, want reason %s", err, tt.reason)
			}
		})
	}
}

// TestKeyRotationMaterial: with two keys installed both CAs are accepted;
// useKey re-issues the leaf from the new primary; removing the old key
// stops accepting its leaves; the primary cannot be removed.
func TestKeyRotationMaterial(t *testing.T) {
	kA, kB := bytes.Repeat([]byte{0xa}, 32), bytes.Repeat([]byte{0xb}, 32)
	caA, _ := caFromKey(kA)
	caB, _ := caFromKey(kB)
	leafA, _ := issueLeaf(caA, "x")
	leafB, _ := issueLeaf(caB, "x")
	m, err := newKeyTLS("n1", kA, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	accepts := func(c tls.Certificate) bool {
		return verifyPeer(tls.ConnectionState{PeerCertificates: []*x509.Certificate{c.Leaf}}, m.material().roots, "") == nil
	}
	signer := func() string { return m.material().cert.Leaf.Issuer.String() }
	if !accepts(leafA) || accepts(leafB) {
		t.Fatal("key A only: want A accepted, B refused")
	}
	if err := m.addKey(kB); err != nil {
		t.Fatal(err)
	}
	if !accepts(leafA) || !accepts(leafB) {
		t.Fatal("A and B installed: want both accepted")
	}
	before := m.material().cert.Leaf
	if err := m.useKey(kB); err != nil {
		t.Fatal(err)
	}
	if after := m.material().cert.Leaf; after.CheckSignatureFrom(caB.cert) != nil || before.CheckSignatureFrom(caA.cert) != nil {
		t.Fatalf("leaf not re-issued from the new primary: %s", signer())
	}
	if err := m.removeKey(kB); err == nil {
		t.Fatal("removing the primary key succeeded")
	}
	if err := m.removeKey(kA); err != nil {
		t.Fatal(err)
	}
	if accepts(leafA) || !accepts(leafB) {
		t.Fatal("A removed: want A refused, B accepted")
	}
}

// TestThrottle: first occurrence logged, the rest counted until the
// window passes; reset makes the next one news; the key set is bounded.
func TestThrottle(t *testing.T) {
	now := time.Unix(0, 0)
	th := newThrottle(30 * time.Second)
	th.now = func() time.Time { return now }
	logged := 0
	for i := range 2000 {
		now = now.Add(time.Millisecond)
		if ok, n := th.allow("x"); ok {
			logged++
			if i > 0 && n == 0 {
				t.Fatalf("summary line without a count at %d", i)
			}
		}
	}
	if logged != 1 {
		t.Fatalf("2000 occurrences in 2s logged %d lines, want 1", logged)
	}
	now = now.Add(31 * time.Second)
	if ok, n := th.allow("x"); !ok || n != 1999 {
		t.Fatalf("after the window: ok=%v suppressed=%d, want true 1999", ok, n)
	}
	th.reset("x")
	if ok, _ := th.allow("x"); !ok {
		t.Fatal("after reset the next occurrence was suppressed")
	}
	for i := range 3 * throttleMaxKeys {
		th.allow(fmt.Sprint("k", i))
	}
	if len(th.keys) > throttleMaxKeys {
		t.Fatalf("%d keys tracked, bound %d", len(th.keys), throttleMaxKeys)
	}
}

func TestRemovalKeepsQuorum(t *testing.T) {
	tests := []struct {
		voters, alive            int
		targetVoter, targetAlive bool
		ok                       bool
	}{
		{3, 2, true, false, true}, // dead voter of 3: 2 alive of 2
		{3, 3, true, true, true},  // alive (leaving) voter: 2 of 2
		{3, 2, true, true, false}, // alive voter while another is dead: 1 of 2
		{5, 3, true, false, true}, // 3 of 4
		{5, 3, true, true, false}, // 2 of 4
		{4, 2, true, false, true}, // 2 alive of 3
		{2, 1, true, false, true}, // 1 of 1
		{1, 1, true, true, false}, // nothing left
		{3, 1, false, false, false},
	}
	for _, tt := range tests {
		err := removalKeepsQuorum(tt.voters, tt.alive, tt.targetVoter, tt.targetAlive)
		if (err == nil) != tt.ok {
			t.Errorf("removalKeepsQuorum(%d voters, %d alive, voter=%v alive=%v) = %v, want ok=%v",
				tt.voters, tt.alive, tt.targetVoter, tt.targetAlive, err, tt.ok)
		}
	}
}
