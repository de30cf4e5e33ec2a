package webui

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// actionRequest carries the parameters of any admin action.
type actionRequest struct {
	Addr  string   `json:"addr"`
	State string   `json:"state"`
	Node  string   `json:"node"`
	Addrs []string `json:"addrs"` // join
}

// Membership is implemented by an Admin that can also join and leave the
// cluster (used by the CLI's join and leave through the JSON API).
type Membership interface {
	Join(ctx context.Context, addrs []string) (int, error)
	Leave(ctx context.Context) error
}

func (s *Server) actJoin(ctx context.Context, u User, req actionRequest) (string, error) {
	m, ok := s.admin.(Membership)
	if !ok {
		return "", errors.New("join is not supported by this node")
	}
	if len(req.Addrs) == 0 {
		return "", badRequest("addrs: give at least one gossip address host:port")
	}
	n, err := m.Join(ctx, req.Addrs)
	if err != nil {
		return "", fmt.Errorf("join %v: %w", req.Addrs, err)
	}
	return fmt.Sprintf("joined through %d of %d address(es)", n, len(req.Addrs)), nil
}

func (s *Server) actLeave(ctx context.Context, u User, req actionRequest) (string, error) {
	m, ok := s.admin.(Membership)
	if !ok {
		return "", errors.New("leave is not supported by this node")
	}
	if err := m.Leave(ctx); err != nil {
		return "", fmt.Errorf("leave: %w", err)
	}
	return "left the cluster", nil
}

// MemberRemover is implemented by an Admin that can remove a failed server
// from the Raft configuration (`redhaven members remove NAME`).
type MemberRemover interface {
	RemoveMember(ctx context.Context, name string) error
}

// actRemoveMember removes req.Node from the Raft configuration. Every
// refusal (not the leader, quorum, alive member, unknown name) is a 409.
func (s *Server) actRemoveMember(ctx context.Context, u User, req actionRequest) (string, error) {
	m, ok := s.admin.(MemberRemover)
	if !ok {
		return "", errors.New("members remove is not supported by this node")
	}
	if req.Node == "" {
		return "", badRequest("node: give the name of the member to remove")
	}
	if err := m.RemoveMember(ctx, req.Node); err != nil {
		return "", &statusError{http.StatusConflict, fmt.Sprintf("remove member %s: %v", req.Node, err)}
	}
	return "removed " + req.Node + " from the raft configuration", nil
}

// action runs one admin action and returns a message for the user.
type action func(ctx context.Context, u User, req actionRequest) (string, error)

// statusError is an error with the HTTP status to answer.
type statusError struct {
	code int
	msg  string
}

func (e *statusError) Error() string { return e.msg }

func badRequest(format string, args ...any) error {
	return &statusError{http.StatusBadRequest, fmt.Sprintf(format, args...)}
}

func notFound(format string, args ...any) error {
	return &statusError{http.StatusNotFound, fmt.Sprintf(format, args...)}
}

// actionTimeout bounds one admin action (a planned failover waits for the
// new master).
const actionTimeout = 30 * time.Second

func (s *Server) actBackend(ctx context.Context, u User, req actionRequest) (string, error) {
	switch req.State {
	case AdminReady, AdminDrain, AdminMaintenance:
	default:
		return "", badRequest("state %q: want %s, %s or %s", req.State, AdminReady, AdminDrain, AdminMaintenance)
	}
	if req.Addr == "" {
		return "", badRequest("addr: missing backend address")
	}
	found := false
	for _, b := range s.src.Snapshot().Backends {
		found = found || b.Addr == req.Addr
	}
	if !found {
		return "", notFound("backend %q: not known", req.Addr)
	}
	if err := s.admin.SetBackendState(ctx, req.Addr, req.State); err != nil {
		return "", fmt.Errorf("set backend %s to %s: %w", req.Addr, req.State, err)
	}
	return fmt.Sprintf("backend %s set to %s", req.Addr, req.State), nil
}

func (s *Server) actFailover(ctx context.Context, u User, _ actionRequest) (string, error) {
	if err := s.admin.RequestFailover(ctx); err != nil {
		return "", fmt.Errorf("request failover: %w", err)
	}
	return "planned failover requested", nil
}

func (s *Server) actTransfer(ctx context.Context, u User, req actionRequest) (string, error) {
	if req.Node != "" {
		found := false
		for _, m := range s.src.Snapshot().Members {
			found = found || m.Name == req.Node
		}
		if !found {
			return "", notFound("node %q: not a cluster member", req.Node)
		}
	}
	if err := s.admin.TransferLeadership(ctx, req.Node); err != nil {
		return "", fmt.Errorf("transfer leadership to %q: %w", req.Node, err)
	}
	if req.Node == "" {
		return "leadership transfer requested", nil
	}
	return "leadership transfer to " + req.Node + " requested", nil
}

func (s *Server) run(r *http.Request, u User, name string, act action, req actionRequest) (string, int, error) {
	ctx, cancel := context.WithTimeout(r.Context(), actionTimeout)
	defer cancel()
	msg, err := act(ctx, u, req)
	log := s.logger.With("user", u.Name, "action", name, "addr", req.Addr, "state", req.State, "node", req.Node)
	if err != nil {
		code := http.StatusInternalServerError
		var se *statusError
		if errors.As(err, &se) {
			code = se.code
		}
		log.Warn("admin action failed", "err", err)
		return "", code, err
	}
	log.Info("admin action")
	return msg, http.StatusOK, nil
}

// adminForm serves an action posted by the page's forms.
func (s *Server) adminForm(act action) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asJSON := wantsJSON(r)
		u, ok := s.authorizeAction(w, r, asJSON)
		if !ok {
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
		if err := r.ParseForm(); err != nil {
			replyError(w, asJSON, http.StatusBadRequest, "bad form: "+err.Error())
			return
		}
		if !s.validCSRF(u.Name, r.PostForm.Get("csrf")) {
			s.logger.Warn("csrf token rejected", "user", u.Name, "path", r.URL.Path, "remote", r.RemoteAddr)
			replyError(w, asJSON, http.StatusForbidden, "missing or invalid CSRF token: reload the page and try again")
			return
		}
		req := actionRequest{Addr: r.PostForm.Get("addr"), State: r.PostForm.Get("state"), Node: r.PostForm.Get("node")}
		msg, code, err := s.run(r, u, r.URL.Path, act, req)
		if asJSON {
			replyResult(w, code, msg, err)
			return
		}
		text := msg
		if err != nil {
			text = err.Error()
		}
		setFlash(w, flash{OK: err == nil, Message: text}, s.tls != nil)
		back := "/"
		if n, err := strconv.Atoi(r.PostForm.Get("refresh")); err == nil && n >= 0 {
			back = "/?refresh=" + strconv.Itoa(n)
		}
		http.Redirect(w, r, back, http.StatusSeeOther)
	})
}

// adminJSON serves an action of the JSON API (used by the CLI).
func (s *Server) adminJSON(act action) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, ok := s.authorizeAction(w, r, true)
		if !ok {
			return
		}
		mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if err != nil || mt != "application/json" {
			replyError(w, true, http.StatusUnsupportedMediaType, "Content-Type must be application/json")
			return
		}
		var req actionRequest
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10))
		if err != nil {
			replyError(w, true, http.StatusBadRequest, "read body: "+err.Error())
			return
		}
		if len(strings.TrimSpace(string(body))) > 0 {
			if err := json.Unmarshal(body, &req); err != nil {
				replyError(w, true, http.StatusBadRequest, "bad JSON body: "+err.Error())
				return
			}
		}
		if a := r.PathValue("addr"); a != "" {
			req.Addr = a
		}
		msg, code, err := s.run(r, u, r.URL.Path, act, req)
		replyResult(w, code, msg, err)
	})
}

func wantsJSON(r *http.Request) bool {
	return strings.Contains(r.Header.Get("Accept"), "application/json")
}

type result struct {
	OK      bool   `json:"ok"`
	Message string `json:"message,omitempty"`
	Error   string `json:"error,omitempty"`
}

func replyResult(w http.ResponseWriter, code int, msg string, err error) {
	res := result{OK: err == nil, Message: msg}
	if err != nil {
		res.Error = err.Error()
	}
	writeJSON(w, code, res)
}

func replyError(w http.ResponseWriter, asJSON bool, code int, msg string) {
	if asJSON {
		writeJSON(w, code, result{Error: msg})
		return
	}
	http.Error(w, fmt.Sprintf("%d %s: %s", code, strings.ToLower(http.StatusText(code)), msg), code)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// flash is the one-shot message shown on the page after an action.
type flash struct {
	OK      bool   `json:"ok"`
	Message string `json:"message"`
}

const flashCookie = "redhaven_flash"

func setFlash(w http.ResponseWriter, f flash, secure bool) {
	b, _ := json.Marshal(f)
	http.SetCookie(w, &http.Cookie{
		Name: flashCookie, Value: base64.RawURLEncoding.EncodeToString(b), Path: "/",
		MaxAge: 60, HttpOnly: true, Secure: secure, SameSite: http.SameSiteStrictMode,
	})
}

// takeFlash reads the flash message, if any, and clears it.
func takeFlash(w http.ResponseWriter, r *http.Request) *flash {
	c, err := r.Cookie(flashCookie)
	if err != nil {
		return nil
	}
	http.SetCookie(w, &http.Cookie{Name: flashCookie, Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	b, err := base64.RawURLEncoding.DecodeString(c.Value)
	if err != nil {
		return nil
	}
	var f flash
	if json.Unmarshal(b, &f) != nil || f.Message == "" {
		return nil
	}
	return &f
}
