package webui

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net"
	"net/http"
	"sync"

	"golang.org/x/crypto/bcrypt"
)

type userKey struct{}

// userFrom returns the authenticated user of a request; ok is false without
// auth configured.
func userFrom(ctx context.Context) (User, bool) {
	u, ok := ctx.Value(userKey{}).(User)
	return u, ok
}

func (s *Server) authEnabled() bool { return len(s.users) > 0 }

// dummyHash is compared against when the user is unknown, so that a wrong
// name costs as much time as a wrong password.
var dummyHash = sync.OnceValue(func() []byte {
	h, _ := bcrypt.GenerateFromPassword([]byte("redhaven-dummy"), bcrypt.DefaultCost)
	return h
})

// authenticate checks the request's basic credentials. A successful bcrypt
// comparison is remembered (as a SHA-256 of the password) so that a page
// refreshing every second or a scraper does not pay bcrypt each time.
func (s *Server) authenticate(r *http.Request) (User, bool) {
	name, pw, ok := r.BasicAuth()
	if !ok {
		return User{}, false
	}
	u, known := s.users[name]
	if !known {
		_ = bcrypt.CompareHashAndPassword(dummyHash(), []byte(pw))
		return User{}, false
	}
	sum := sha256.Sum256([]byte(pw))
	s.authMu.Lock()
	cached, hit := s.authCache[name]
	s.authMu.Unlock()
	if hit && subtle.ConstantTimeCompare(cached[:], sum[:]) == 1 {
		return u, true
	}
	if bcrypt.CompareHashAndPassword([]byte(u.PasswordHash), []byte(pw)) != nil {
		return User{}, false
	}
	s.authMu.Lock()
	s.authCache[name] = sum
	s.authMu.Unlock()
	return u, true
}

func challenge(w http.ResponseWriter) {
	w.Header().Set("WWW-Authenticate", `Basic realm="redhaven", charset="UTF-8"`)
	http.Error(w, "401 unauthorized: basic credentials of an http.auth user required", http.StatusUnauthorized)
}

// reader lets any configured user in (everyone when no auth is configured).
func (s *Server) reader(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.authEnabled() {
			h.ServeHTTP(w, r)
			return
		}
		u, ok := s.authenticate(r)
		if !ok {
			challenge(w)
			return
		}
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), userKey{}, u)))
	})
}

// canAct tells whether this user may use the admin actions of this server.
func (s *Server) canAct(u User, authed bool) bool {
	return authed && u.Role == RoleAdmin && s.admin != nil
}

// authorizeAction checks the rules shared by both action flavours: auth
// configured, valid credentials, admin role, an Admin to call. It answers
// the request itself and returns false when the action must not run.
func (s *Server) authorizeAction(w http.ResponseWriter, r *http.Request, asJSON bool) (User, bool) {
	if !s.authEnabled() {
		// The CLI on the node itself (JSON API from a loopback address) may
		// act without users configured, like a local admin socket; the page
		// and remote clients stay read-only.
		if asJSON && s.admin != nil && isLoopback(r.RemoteAddr) {
			return User{Name: "local", Role: RoleAdmin}, true
		}
		replyError(w, asJSON, http.StatusForbidden, "read-only: no http.auth users are configured (admin API only from the node itself)")
		return User{}, false
	}
	u, ok := s.authenticate(r)
	if !ok {
		challenge(w)
		return User{}, false
	}
	if u.Role != RoleAdmin {
		replyError(w, asJSON, http.StatusForbidden, "user "+u.Name+" has role "+u.Role+": admin required")
		return User{}, false
	}
	if s.admin == nil {
		replyError(w, asJSON, http.StatusForbidden, "admin actions are disabled on this node")
		return User{}, false
	}
	return u, true
}

// csrfToken is the token the forms of user's page carry.
func (s *Server) csrfToken(user string) string {
	m := hmac.New(sha256.New, s.secret)
	m.Write([]byte("redhaven-csrf\x00"))
	m.Write([]byte(user))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func (s *Server) validCSRF(user, token string) bool {
	want := s.csrfToken(user)
	return token != "" && hmac.Equal([]byte(want), []byte(token))
}

// isLoopback reports whether a request's remote address is on loopback.
func isLoopback(remote string) bool {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
