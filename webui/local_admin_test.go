package webui_test

import (
	"context"
	"github.com/redhaven/redhaven/webui"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// memberAdmin is a testAdmin that can also join and leave.
type memberAdmin struct{ testAdmin }

func (a *memberAdmin) Join(ctx context.Context, addrs []string) (int, error) {
	return len(addrs), a.record("join " + strings.Join(addrs, ","))
}
func (a *memberAdmin) Leave(ctx context.Context) error { return a.record("leave") }

// Without http.auth, the JSON admin API answers the node itself (the CLI
// on loopback) and nobody else; the HTML forms stay read-only.
func TestLocalAdminWithoutAuth(t *testing.T) {
	src := &testSource{}
	src.update(func(s *webui.Snapshot) { *s = sampleSnapshot() })
	admin := &memberAdmin{}
	h := newServer(t, openConfig(), src, admin).Handler()
	post := func(remote, path, body string) *httptest.ResponseRecorder {
		req := httptest.NewRequest("POST", path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.RemoteAddr = remote
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	tests := []struct {
		name, remote, path, body string
		code                     int
		call                     string
	}{
		{"failover from loopback", "127.0.0.1:5555", "/api/v1/failover", "{}", http.StatusOK, "failover"},
		{"failover from ipv6 loopback", "[::1]:5555", "/api/v1/failover", "{}", http.StatusOK, "failover"},
		{"failover from elsewhere", "192.0.2.7:5555", "/api/v1/failover", "{}", http.StatusForbidden, ""},
		{"join", "127.0.0.1:5555", "/api/v1/join", `{"addrs":["127.0.0.1:7946"]}`, http.StatusOK, "join 127.0.0.1:7946"},
		{"join without addrs", "127.0.0.1:5555", "/api/v1/join", `{}`, http.StatusBadRequest, ""},
		{"leave", "127.0.0.1:5555", "/api/v1/leave", `{}`, http.StatusOK, "leave"},
		{"form from loopback stays read-only", "127.0.0.1:5555", "/admin/failover", "", http.StatusForbidden, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(admin.Calls())
			rec := post(tt.remote, tt.path, tt.body)
			if rec.Code != tt.code {
				t.Fatalf("status %d, want %d: %s", rec.Code, tt.code, rec.Body)
			}
			calls := admin.Calls()[before:]
			if tt.call == "" && len(calls) > 0 {
				t.Fatalf("unexpected admin calls %v", calls)
			}
			if tt.call != "" && (len(calls) != 1 || calls[0] != tt.call) {
				t.Fatalf("admin calls %v, want [%s]", calls, tt.call)
			}
		})
	}
}
