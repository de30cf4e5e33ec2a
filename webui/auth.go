package webui

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/http"
	"time"
)

type userKey struct{}

// userFrom returns the authenticated user of a request; ok is false without
// auth configured.
func userFrom(ctx context.Context) (User, bool) {
	u, ok := ctx.Value(userKey{}).(User)
	return u, ok
}

func (s *Server) authEnabled() bool { return len(*s.users.Load()) > 0 }

// authenticate checks the request's basic credentials through the
// password checker (cache, per-address limits, one bcrypt at a time).
func (s *Server) authenticate(r *http.Request) (User, authResult) {
	name, pw, ok := r.BasicAuth()
	if !ok {
		s.authRefused.WithLabelValues(authBad.String()).Inc()
		return User{}, authBad
	}
	u, known := (*s.users.Load())[name]
	var hash []byte
	if known {
		hash = []byte(u.PasswordHash)
	}
	res := s.passwords.check(r.Context(), r.RemoteAddr, name, pw, hash)
	if res != authOK {
		s.authRefused.WithLabelValues(res.String()).Inc()
		return User{}, res
	}
	return u, authOK
}

// refuseAuth answers a request whose credentials were not accepted. An
// address over its limit waits limitedDelay for its 429 (while fewer than
// maxDelayed wait): a client that floods over a few kept-alive connections
// is slowed to a few attempts a second, and the agent spends a timer on
// each instead of parsing a thousand requests a second. The connection
// closes after every refusal: a client that goes on connects again, and
// from a limited address is then refused at accept (gateListener), before
// any parsing.
func (s *Server) refuseAuth(w http.ResponseWriter, r *http.Request, res authResult, asJSON bool) {
	w.Header().Set("Connection", "close")
	switch res {
	case authLimited:
		select {
		case s.delayed <- struct{}{}:
			t := time.NewTimer(jitter(s.limitedDelay)) // spread: a flood's 429s would fall due together
			select {
			case <-t.C:
			case <-r.Context().Done():
			}
			t.Stop()
			<-s.delayed
		default:
		}
		w.Header().Set("Retry-After", fmt.Sprint(int(failEvery.Seconds())))
		replyError(w, asJSON, http.StatusTooManyRequests, "too many wrong passwords from this address: try again later")
	case authBusy:
		w.Header().Set("Retry-After", "1")
		replyError(w, asJSON, http.StatusServiceUnavailable, "busy checking passwords: try again later")
	default:
		w.Header().Set("WWW-Authenticate", `Basic realm="redhaven", charset="UTF-8"`)
		replyError(w, asJSON, http.StatusUnauthorized, "basic credentials of an http.auth user required")
	}
}

type socketKey struct{}

// viaSocket tells whether a request came over the admin socket.
func viaSocket(ctx context.Context) bool {
	v, _ := ctx.Value(socketKey{}).(bool)
	return v
}

// socketUser is who a request over the admin socket acts as: the OS let
// the caller connect (root, or a member of the socket's group).
var socketUser = User{Name: "admin-socket", Role: RoleAdmin}

// reader lets any configured user in (everyone when no auth is configured,
// and every caller over the admin socket).
func (s *Server) reader(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if viaSocket(r.Context()) {
			h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), userKey{}, socketUser)))
			return
		}
		if !s.authEnabled() {
			h.ServeHTTP(w, r)
			return
		}
		u, res := s.authenticate(r)
		if res != authOK {
			s.refuseAuth(w, r, res, wantsJSON(r))
			return
		}
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), userKey{}, u)))
	})
}

// canAct tells whether this user may use the admin actions of this server.
func (s *Server) canAct(u User, authed bool) bool {
	return authed && u.Role == RoleAdmin && s.admin != nil
}

// authorizeAction checks the rules shared by both action flavours: over
// the admin socket every caller is an admin; over TCP the request must
// name this server in Host/Origin and carry the credentials of an admin
// user. It answers the request itself and returns false when the action
// must not run.
func (s *Server) authorizeAction(w http.ResponseWriter, r *http.Request, asJSON bool) (User, bool) {
	if s.admin == nil {
		replyError(w, asJSON, http.StatusForbidden, "admin actions are disabled on this node")
		return User{}, false
	}
	if viaSocket(r.Context()) {
		return socketUser, true
	}
	if !s.checkOrigin(w, r, asJSON) {
		return User{}, false
	}
	if !s.authEnabled() {
		replyError(w, asJSON, http.StatusForbidden, "read-only over TCP: no http.auth users are configured (use the CLI on the node: the admin socket)")
		return User{}, false
	}
	u, res := s.authenticate(r)
	if res != authOK {
		s.refuseAuth(w, r, res, asJSON)
		return User{}, false
	}
	if u.Role != RoleAdmin {
		replyError(w, asJSON, http.StatusForbidden, "user "+u.Name+" has role "+u.Role+": admin required")
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
