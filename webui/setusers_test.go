package webui_test

import (
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/redhaven/redhaven/webui"
)

// TestSetUsers: a reload replaces the http.auth users of a running server:
// a changed password (the old one was just accepted, so cached) and a
// removed user are refused at once, a new user gets in, and no users
// makes it open again.
func TestSetUsers(t *testing.T) {
	srv := newServer(t, authConfig(), &testSource{snap: sampleSnapshot()}, &testAdmin{})
	h := srv.Handler()
	status := func(u *user) int { return do(h, "GET", "/api/v1/stats", nil, nil, u).Code }
	if got := status(&adminUser); got != 200 {
		t.Fatalf("alice before the reload: %d", got)
	}
	if got := status(nil); got != 401 {
		t.Fatalf("no credentials with users: %d, want 401", got)
	}
	newPW := user{adminUser.name, "alice-new-secret", webui.RoleAdmin}
	h2, err := bcrypt.GenerateFromPassword([]byte(newPW.pw), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	srv.SetUsers([]webui.User{{Name: adminUser.name, PasswordHash: string(h2), Role: webui.RoleAdmin}})
	if got := status(&adminUser); got != 401 {
		t.Errorf("alice's old password after the change: %d, want 401", got)
	}
	if got := status(&newPW); got != 200 {
		t.Errorf("alice's new password: %d, want 200", got)
	}
	srv.SetUsers([]webui.User{{Name: readerUser.name, PasswordHash: hashes()[readerUser.name], Role: webui.RoleRead}})
	if got := status(&adminUser); got != 401 {
		t.Errorf("alice after she was removed: %d, want 401", got)
	}
	if got := status(&readerUser); got != 200 {
		t.Errorf("bob after the reload: %d, want 200", got)
	}
	srv.SetUsers(nil)
	if got := status(nil); got != 200 {
		t.Errorf("no users after the reload, no credentials: %d, want 200 (open, read-only)", got)
	}
}
