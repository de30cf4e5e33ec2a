package webui_test

import (
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/redhaven/redhaven/webui"
)

func TestConfigValidate(t *testing.T) {
	good := hashes()["alice"]
	tests := []struct {
		name string
		mod  func(*webui.Config)
		want []string // substrings of the error; none: valid
	}{
		{"default", func(c *webui.Config) {}, nil},
		{"users", func(c *webui.Config) {
			c.Auth = []webui.User{{Name: "a", PasswordHash: good, Role: "read"}, {Name: "b", PasswordHash: good, Role: "admin"}}
		}, nil},
		{"tls both", func(c *webui.Config) { c.TLSCert, c.TLSKey = "c.pem", "k.pem" }, nil},
		{"refresh off", func(c *webui.Config) { c.DefaultRefresh = 0 }, nil},
		{"bad listen", func(c *webui.Config) { c.Listen = "8404" }, []string{`http.listen: bad address "8404"`}},
		{"not bcrypt", func(c *webui.Config) {
			c.Auth = []webui.User{{Name: "a", PasswordHash: "secret", Role: "read"}}
		}, []string{"http.auth[0].password_hash: not a bcrypt hash"}},
		{"empty name and bad role", func(c *webui.Config) {
			c.Auth = []webui.User{{Name: "a", PasswordHash: good, Role: "read"}, {PasswordHash: good, Role: "root"}}
		}, []string{"http.auth[1].name: must not be empty", `http.auth[1].role: "root"`}},
		{"duplicate", func(c *webui.Config) {
			c.Auth = []webui.User{{Name: "a", PasswordHash: good, Role: "read"}, {Name: "a", PasswordHash: good, Role: "admin"}}
		}, []string{`http.auth[1].name: duplicate user "a"`}},
		{"colon in name", func(c *webui.Config) {
			c.Auth = []webui.User{{Name: "a:b", PasswordHash: good, Role: "read"}}
		}, []string{"http.auth[0].name"}},
		{"tls half", func(c *webui.Config) { c.TLSCert = "c.pem" }, []string{"http.tls_cert, http.tls_key: set both or neither"}},
		{"negative refresh", func(c *webui.Config) { c.DefaultRefresh = -time.Second }, []string{"http.refresh: must not be negative"}},
		{"tiny refresh", func(c *webui.Config) { c.DefaultRefresh = time.Millisecond }, []string{"http.refresh: must be 0 (off) or at least 1s"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := webui.DefaultConfig()
			tt.mod(&c)
			err := c.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate: nil, want %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestDefaultConfig(t *testing.T) {
	c := webui.DefaultConfig()
	if c.Listen != ":8404" || len(c.Auth) != 0 || c.TLSCert != "" || c.AdminSocket != webui.DefaultAdminSocket {
		t.Errorf("DefaultConfig = %+v", c)
	}
}

func TestHashPassword(t *testing.T) {
	h, err := webui.HashPassword("s3cret")
	if err != nil {
		t.Fatal(err)
	}
	if bcrypt.CompareHashAndPassword([]byte(h), []byte("s3cret")) != nil {
		t.Error("hash does not match its password")
	}
	if bcrypt.CompareHashAndPassword([]byte(h), []byte("other")) == nil {
		t.Error("hash matches another password")
	}
	if _, err := webui.HashPassword(""); err == nil {
		t.Error("empty password accepted")
	}
}

func TestNewErrors(t *testing.T) {
	src := &testSource{snap: sampleSnapshot()}
	bad := openConfig()
	bad.Listen = "nope"
	if _, err := webui.New(bad, src, nil, nil); err == nil || !strings.Contains(err.Error(), "http.listen") {
		t.Errorf("bad listen: %v", err)
	}
	if _, err := webui.New(openConfig(), nil, nil, nil); err == nil {
		t.Error("nil source accepted")
	}
	tls := openConfig()
	tls.TLSCert, tls.TLSKey = "/nonexistent/cert.pem", "/nonexistent/key.pem"
	if _, err := webui.New(tls, src, nil, nil); err == nil || !strings.Contains(err.Error(), "http.tls_cert") {
		t.Errorf("missing cert: %v", err)
	}
	s := newServer(t, openConfig(), src, nil)
	busy := openConfig()
	busy.Listen = s.Addr().String()
	if _, err := webui.New(busy, src, nil, nil); err == nil || !strings.Contains(err.Error(), busy.Listen) {
		t.Errorf("port in use: %v", err)
	}
}
