package webui_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/redhaven/redhaven/webui"
)

// forwardingAdmin answers as a follower whose actions the leader n1
// carried out, or with the error set for the next call.
type forwardingAdmin struct {
	mu     sync.Mutex
	err    error
	resets []string
	keyOps []string
}

func (a *forwardingAdmin) answer() (webui.Acted, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.err != nil {
		return webui.Acted{}, a.err
	}
	return webui.Acted{Node: "n1", Forwarded: true}, nil
}

func (a *forwardingAdmin) SetBackendState(context.Context, string, string, string) (webui.Acted, error) {
	return a.answer()
}
func (a *forwardingAdmin) RequestFailover(context.Context, string) (webui.Acted, error) {
	return a.answer()
}
func (a *forwardingAdmin) TransferLeadership(context.Context, string) (webui.Acted, error) {
	return a.answer()
}
func (a *forwardingAdmin) RemoveMember(context.Context, string) (webui.Acted, error) {
	return a.answer()
}
func (a *forwardingAdmin) ResetRoute(_ context.Context, master string, epoch *int64) (webui.Acted, error) {
	a.mu.Lock()
	if epoch != nil {
		a.resets = append(a.resets, fmt.Sprintf("%s@%d", master, *epoch))
	} else {
		a.resets = append(a.resets, "any")
	}
	a.mu.Unlock()
	return a.answer()
}
func (a *forwardingAdmin) RotateKey(_ context.Context, op, key string) ([]webui.KeyResult, error) {
	a.mu.Lock()
	a.keyOps = append(a.keyOps, op)
	a.mu.Unlock()
	if _, err := a.answer(); err != nil {
		return nil, err
	}
	return []webui.KeyResult{{Node: "n1", Primary: "aa", Keys: []string{"aa"}}, {Node: "n2", Primary: "aa", Keys: []string{"aa"}}}, nil
}

// TestAdminForwarding: the JSON API says which node acted and answers
// each expected refusal with its own status, never a 500.
func TestAdminForwarding(t *testing.T) {
	src := &testSource{snap: sampleSnapshot()}
	admin := &forwardingAdmin{}
	h := newServer(t, authConfig(), src, admin).Handler()
	post := func(path, body string) (int, map[string]any) {
		t.Helper()
		rec := do(h, "POST", path, strings.NewReader(body), map[string]string{"Content-Type": "application/json"}, &adminUser)
		var out map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
			t.Fatalf("%s: not JSON: %s", path, rec.Body)
		}
		return rec.Code, out
	}
	code, out := post("/api/v1/failover", `{}`)
	if code != http.StatusOK || out["node"] != "n1" || out["forwarded"] != true {
		t.Fatalf("forwarded failover: %d %v", code, out)
	}
	for _, tc := range []struct {
		name string
		err  error
		code int
	}{
		{"bad input", webui.Classify(webui.ErrBadRequest, errors.New("cluster: bad request: state")), http.StatusBadRequest},
		{"unknown member", webui.Classify(webui.ErrNotFound, errors.New("cluster: unknown member")), http.StatusNotFound},
		{"not possible now", webui.Classify(webui.ErrConflict, errors.New("cluster: a planned failover is already pending")), http.StatusConflict},
		{"no leader", webui.Classify(webui.ErrNoLeader, errors.New("cluster: no raft leader")), http.StatusServiceUnavailable},
		{"leader timeout", webui.Classify(webui.ErrTimeout, errors.New("cluster: the leader did not answer in time")), http.StatusGatewayTimeout},
		{"deadline", fmt.Errorf("forward: %w", context.DeadlineExceeded), http.StatusGatewayTimeout},
		{"unexpected", errors.New("disk on fire"), http.StatusInternalServerError},
	} {
		admin.mu.Lock()
		admin.err = tc.err
		admin.mu.Unlock()
		for _, path := range []string{"/api/v1/failover", "/api/v1/transfer-leadership", "/api/v1/route/reset"} {
			code, out := post(path, `{}`)
			if code != tc.code || out["ok"] != false || !strings.Contains(fmt.Sprint(out["error"]), tc.err.Error()) {
				t.Errorf("%s on %s: %d %v, want %d with the error's text", tc.name, path, code, out, tc.code)
			}
		}
	}
	// members remove: a refusal without a kind is a 409, as before.
	admin.mu.Lock()
	admin.err = errors.New("removal would lose the raft quorum")
	admin.mu.Unlock()
	if code, out := post("/api/v1/members/remove", `{"node":"n3"}`); code != http.StatusConflict {
		t.Errorf("members remove refused: %d %v, want 409", code, out)
	}
	admin.mu.Lock()
	admin.err = nil
	admin.mu.Unlock()

	// route reset: the expected route travels with the request.
	if code, out := post("/api/v1/route/reset", `{"master":"10.0.0.9:6379","epoch":999999999}`); code != http.StatusOK || out["node"] != "n1" {
		t.Fatalf("route reset: %d %v", code, out)
	}
	if code, _ := post("/api/v1/route/reset", `{"master":"10.0.0.9:6379"}`); code != http.StatusBadRequest {
		t.Fatalf("route reset with a master and no epoch: %d, want 400", code)
	}
	token := csrfFor(t, h, adminUser)
	rec := do(h, "POST", "/admin/route-reset", form("csrf", token, "master", "10.0.0.9:6379", "epoch", "7"), formHdr, &adminUser)
	if rec.Code != http.StatusSeeOther {
		t.Fatalf("route reset form: %d %s", rec.Code, rec.Body)
	}
	// the page's flash says who carried it out
	var flash string
	for _, c := range rec.Result().Cookies() {
		if c.Name == "redhaven_flash" {
			b, _ := base64.RawURLEncoding.DecodeString(c.Value)
			flash = string(b)
		}
	}
	if !strings.Contains(flash, "forwarded to the leader n1") {
		t.Fatalf("flash after a forwarded reset: %q", flash)
	}
	admin.mu.Lock()
	resets := strings.Join(admin.resets, " ")
	admin.mu.Unlock()
	if !strings.Contains(resets, "10.0.0.9:6379@999999999") || !strings.Contains(resets, "10.0.0.9:6379@7") {
		t.Fatalf("resets = %s", resets)
	}

	// keys: one row per node, the key is never echoed.
	const key = "c2VjcmV0LWtleS1ub3QtdG8tYmUtZWNob2VkLTEyMzQ="
	rec = do(h, "POST", "/api/v1/keys", strings.NewReader(`{"op":"install","key":"`+key+`"}`), map[string]string{"Content-Type": "application/json"}, &adminUser)
	if rec.Code != http.StatusOK || strings.Contains(rec.Body.String(), key) || !strings.Contains(rec.Body.String(), `"n2"`) {
		t.Fatalf("keys install: %d %s", rec.Code, rec.Body)
	}
	for body, want := range map[string]int{`{"op":"install"}`: 400, `{"op":"steal"}`: 400, `{"op":"list"}`: 200} {
		if code, out := post("/api/v1/keys", body); code != want {
			t.Errorf("keys %s: %d %v, want %d", body, code, out, want)
		}
	}
	if rec := do(h, "POST", "/api/v1/keys", strings.NewReader(`{"op":"list"}`), map[string]string{"Content-Type": "application/json"}, &readerUser); rec.Code != http.StatusForbidden {
		t.Fatalf("keys by a reader: %d, want 403", rec.Code)
	}
}

// TestRouteResetButton: the page offers the reset next to the
// contradiction line, to admins only, with the route it would clear.
func TestRouteResetButton(t *testing.T) {
	snap := sampleSnapshot()
	snap.Route.Master, snap.Route.Epoch = "10.9.9.9:6379", 999999999
	snap.Route.Contradicted, snap.Route.EpochAhead = "not a known redis node", true
	src := &testSource{snap: snap}
	h := newServer(t, authConfig(), src, &forwardingAdmin{}).Handler()
	page := do(h, "GET", "/", nil, nil, &adminUser).Body.String()
	mustContain(t, "admin page", page, `id="route-reset"`, `action="/admin/route-reset"`, `name="master" value="10.9.9.9:6379"`, `name="epoch" value="999999999"`)
	if page := do(h, "GET", "/", nil, nil, &readerUser).Body.String(); strings.Contains(page, `id="route-reset"`) {
		t.Fatal("a reader sees the reset button")
	}
	src.update(func(s *webui.Snapshot) { s.Route.Contradicted, s.Route.EpochAhead = "", false })
	if page := do(h, "GET", "/", nil, nil, &adminUser).Body.String(); strings.Contains(page, `id="route-reset"`) {
		t.Fatal("reset button shown for a route nobody contradicts")
	}
}
