package webui_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redhaven/redhaven/webui"
)

// runServer runs s until the test ends and checks that Run returns cleanly.
func runServer(t *testing.T, s *webui.Server) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	stopped := false
	stop = func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(15 * time.Second):
			t.Fatal("Run did not return within 15s of cancel")
			return nil
		}
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return stop
}

func get(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestRunServesAndStops(t *testing.T) {
	src := &testSource{snap: sampleSnapshot()}
	s := newServer(t, openConfig(), src, nil)
	stop := runServer(t, s)
	c := &http.Client{Timeout: 10 * time.Second}
	url := "http://" + s.Addr().String()
	// The listener is bound by New, so a request can come before Run has
	// even started serving.
	if code, body := get(t, c, url+"/health/live"); code != 200 || body != "{\"status\":\"ok\"}\n" {
		t.Errorf("live = %d %q", code, body)
	}
	if code, _ := get(t, c, url+"/"); code != 200 {
		t.Errorf("page = %d", code)
	}
	// HAProxy's spelling survives a real HTTP round trip.
	if code, body := get(t, c, url+"/stats;csv"); code != 200 || !strings.HasPrefix(body, "type,name,addr,") {
		t.Errorf("stats;csv = %d %.40q", code, body)
	}
	if err := stop(); err != nil {
		t.Fatalf("Run returned %v", err)
	}
	if conn, err := net.DialTimeout("tcp", s.Addr().String(), time.Second); err == nil {
		conn.Close()
		t.Error("listener still open after Run returned")
	}
}

// selfSigned writes a certificate for 127.0.0.1 and its key into dir.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "redhaven test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

func TestTLS(t *testing.T) {
	certFile, keyFile, pool := selfSigned(t, t.TempDir())
	cfg := authConfig()
	cfg.TLSCert, cfg.TLSKey = certFile, keyFile
	src := &testSource{snap: sampleSnapshot()}
	s := newServer(t, cfg, src, &testAdmin{})
	runServer(t, s)
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	url := "https://" + s.Addr().String()
	if code, _ := get(t, c, url+"/health/ready"); code != 200 {
		t.Errorf("https ready = %d", code)
	}
	req, _ := http.NewRequest("GET", url+"/api/v1/stats", nil)
	req.SetBasicAuth(readerUser.name, readerUser.pw)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.TLS == nil {
		t.Errorf("https stats = %d, tls %v", resp.StatusCode, resp.TLS != nil)
	}
	// Plain HTTP to the TLS port does not get the page.
	plain := &http.Client{Timeout: 10 * time.Second}
	if code, _ := get(t, plain, "http://"+s.Addr().String()+"/health/live"); code != http.StatusBadRequest {
		t.Errorf("plain http to tls port = %d, want 400", code)
	}
}
