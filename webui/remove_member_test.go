package webui_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/redhaven/redhaven/webui"
)

// removerAdmin is a testAdmin that can remove members; "n9" is refused.
type removerAdmin struct{ testAdmin }

func (a *removerAdmin) RemoveMember(ctx context.Context, name string) (webui.Acted, error) {
	if name == "n9" {
		return webui.Acted{}, errors.New("removal would lose the raft quorum")
	}
	return webui.Acted{Node: testLeader}, a.record("remove " + name)
}

// POST /api/v1/members/remove calls Admin.RemoveMember for an admin; a
// refusal is a 409, a missing name a 400, a reader a 403.
func TestRemoveMemberAPI(t *testing.T) {
	admin := &removerAdmin{}
	h := newServer(t, authConfig(), &testSource{}, admin).Handler()
	tests := []struct {
		name, body string
		u          user
		code       int
		call       string
	}{
		{"admin removes", `{"node":"n3"}`, adminUser, http.StatusOK, "remove n3"},
		{"refused", `{"node":"n9"}`, adminUser, http.StatusConflict, ""},
		{"no name", `{}`, adminUser, http.StatusBadRequest, ""},
		{"reader", `{"node":"n3"}`, readerUser, http.StatusForbidden, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(admin.Calls())
			req := httptest.NewRequest("POST", "/api/v1/members/remove", strings.NewReader(tt.body))
			req.Header.Set("Content-Type", "application/json")
			req.SetBasicAuth(tt.u.name, tt.u.pw)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.code {
				t.Fatalf("status %d, want %d: %s", rec.Code, tt.code, rec.Body)
			}
			calls := admin.Calls()[before:]
			if (tt.call == "") != (len(calls) == 0) || (tt.call != "" && calls[0] != tt.call) {
				t.Fatalf("admin calls %v, want %q", calls, tt.call)
			}
		})
	}
}
