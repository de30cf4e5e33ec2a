package webui

import (
	"context"
	"encoding/base64"
	"encoding/json"
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
	// Service names the service of a backend or failover action ("": the
	// only one); also ?service= on the JSON API.
	Service string   `json:"service"`
	Addr    string   `json:"addr"`
	State   string   `json:"state"`
	Node    string   `json:"node"`
	Addrs   []string `json:"addrs"` // join
	// route reset: the route the caller saw (reset only while it is
	// still committed); Epoch nil = unconditional.
	Master string `json:"master"`
	Epoch  *int64 `json:"epoch"`
	// keys
	Op  string `json:"op"`
	Key string `json:"key"` // never logged or echoed
}

// Acted says which node carried out an admin action.
type Acted struct {
	Node      string `json:"node"`      // the node that acted
	Forwarded bool   `json:"forwarded"` // the node asked forwarded it to the leader
	// ID is a failover's request ID, which Service.PlannedFailover names
	// (0 for the other actions).
	ID uint64 `json:"id,omitempty"`
}

// outcome is what an action returns on success.
type outcome struct {
	msg   string
	acted Acted
	keys  []KeyResult
}

// Membership is implemented by an Admin that can also join and leave the
// cluster (used by the CLI's join and leave through the JSON API). Both
// act on this node only.
type Membership interface {
	Join(ctx context.Context, addrs []string) (int, error)
	Leave(ctx context.Context) error
}

// here is the Acted of an action this node carries out itself.
func (s *Server) here() Acted { return Acted{Node: s.src.Snapshot().Node} }

func (s *Server) actJoin(ctx context.Context, u User, req actionRequest) (outcome, error) {
	m, ok := s.admin.(Membership)
	if !ok {
		return outcome{}, &statusError{http.StatusNotImplemented, "join is not supported by this node"}
	}
	if len(req.Addrs) == 0 {
		return outcome{}, badRequest("addrs: give at least one gossip address host:port")
	}
	n, err := m.Join(ctx, req.Addrs)
	if err != nil {
		return outcome{}, &statusError{http.StatusBadGateway, fmt.Sprintf("join %v: %v", req.Addrs, err)}
	}
	return outcome{msg: fmt.Sprintf("joined through %d of %d address(es); join acts on this node only", n, len(req.Addrs)), acted: s.here()}, nil
}

func (s *Server) actLeave(ctx context.Context, u User, req actionRequest) (outcome, error) {
	m, ok := s.admin.(Membership)
	if !ok {
		return outcome{}, &statusError{http.StatusNotImplemented, "leave is not supported by this node"}
	}
	if err := m.Leave(ctx); err != nil {
		return outcome{}, fmt.Errorf("leave: %w", err)
	}
	return outcome{msg: "left the cluster; leave acts on this node only", acted: s.here()}, nil
}

// MemberRemover is implemented by an Admin that can remove a failed server
// from the Raft configuration (`redhaven members remove NAME`).
type MemberRemover interface {
	RemoveMember(ctx context.Context, name string) (Acted, error)
}

// actRemoveMember removes req.Node from the Raft configuration. A refusal
// without a kind (Classify) is a 409.
func (s *Server) actRemoveMember(ctx context.Context, u User, req actionRequest) (outcome, error) {
	m, ok := s.admin.(MemberRemover)
	if !ok {
		return outcome{}, &statusError{http.StatusNotImplemented, "members remove is not supported by this node"}
	}
	if req.Node == "" {
		return outcome{}, badRequest("node: give the name of the member to remove")
	}
	acted, err := m.RemoveMember(ctx, req.Node)
	if err != nil {
		if statusOf(err) == http.StatusInternalServerError {
			err = Classify(ErrConflict, err)
		}
		return outcome{}, fmt.Errorf("remove member %s: %w", req.Node, err)
	}
	return outcome{msg: "removed " + req.Node + " from the raft configuration", acted: acted}, nil
}

// RouteResetter is implemented by an Admin that can clear the committed
// route (`redhaven route reset`).
type RouteResetter interface {
	// ResetRoute clears the committed route; with epoch not nil only
	// while master and *epoch are still the committed route.
	ResetRoute(ctx context.Context, master string, epoch *int64) (Acted, error)
}

func (s *Server) actResetRoute(ctx context.Context, u User, req actionRequest) (outcome, error) {
	m, ok := s.admin.(RouteResetter)
	if !ok {
		return outcome{}, &statusError{http.StatusNotImplemented, "route reset is not supported by this node"}
	}
	if req.Epoch == nil && req.Master != "" {
		return outcome{}, badRequest("epoch: give the epoch of the route to reset with its master")
	}
	acted, err := m.ResetRoute(ctx, req.Master, req.Epoch)
	if err != nil {
		return outcome{}, fmt.Errorf("reset route: %w", err)
	}
	msg := "committed route cleared: the leader commits sentinel's master again"
	if req.Epoch != nil {
		msg = fmt.Sprintf("committed route (master %s, epoch %d) cleared: the leader commits sentinel's master again", orDash(req.Master), *req.Epoch)
	}
	return outcome{msg: msg, acted: acted}, nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// KeyResult is one node's outcome of a cluster key operation, with its
// keys as fingerprints (never the keys).
type KeyResult struct {
	Node    string   `json:"node"`
	Primary string   `json:"primary"`
	Keys    []string `json:"keys"`
	Error   string   `json:"error,omitempty"`
}

// KeyRotator is implemented by an Admin that can rotate the cluster key
// on every member (`redhaven keys`).
type KeyRotator interface {
	// RotateKey runs op (list, install, use, remove) on every member.
	RotateKey(ctx context.Context, op, key string) ([]KeyResult, error)
}

func (s *Server) actKeys(ctx context.Context, u User, req actionRequest) (outcome, error) {
	m, ok := s.admin.(KeyRotator)
	if !ok {
		return outcome{}, &statusError{http.StatusNotImplemented, "keys are not supported by this node"}
	}
	switch req.Op {
	case "list":
	case "install", "use", "remove":
		if req.Key == "" {
			return outcome{}, badRequest("key: give the cluster key (base64, `redhaven keygen`)")
		}
	default:
		return outcome{}, badRequest("op %q: want list, install, use or remove", req.Op)
	}
	res, err := m.RotateKey(ctx, req.Op, req.Key)
	if err != nil {
		return outcome{}, fmt.Errorf("keys %s: %w", req.Op, err)
	}
	failed := 0
	for _, r := range res {
		if r.Error != "" {
			failed++
		}
	}
	out := outcome{msg: fmt.Sprintf("keys %s: done on %d of %d node(s)", req.Op, len(res)-failed, len(res)), acted: s.here(), keys: res}
	if failed > 0 {
		return out, &statusError{http.StatusBadGateway, fmt.Sprintf("keys %s failed on %d of %d node(s); run it again once they answer", req.Op, failed, len(res))}
	}
	return out, nil
}

// action runs one admin action.
type action func(ctx context.Context, u User, req actionRequest) (outcome, error)

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

// service resolves an action's service against the snapshot: "" is the
// only service; an unknown name is a 404, "" with several services a 400,
// both naming the services there are.
func (s *Server) service(name string) (Service, error) {
	snap := s.snapshot()
	sv, err := snap.Service(name)
	if err != nil {
		return Service{}, err
	}
	return *sv, nil
}

// servicePrefix is "service NAME: " for messages, "" for a service
// without a name.
func servicePrefix(name string) string {
	if name == "" {
		return ""
	}
	return "service " + name + ": "
}

func (s *Server) actBackend(ctx context.Context, u User, req actionRequest) (outcome, error) {
	switch req.State {
	case AdminReady, AdminDrain, AdminMaintenance:
	default:
		return outcome{}, badRequest("state %q: want %s, %s or %s", req.State, AdminReady, AdminDrain, AdminMaintenance)
	}
	if req.Addr == "" {
		return outcome{}, badRequest("addr: missing backend address")
	}
	sv, err := s.service(req.Service)
	if err != nil {
		return outcome{}, err
	}
	found := false
	for _, b := range sv.Backends {
		found = found || b.Addr == req.Addr
	}
	if !found {
		if sv.Name != "" {
			return outcome{}, notFound("backend %q: not known in service %q", req.Addr, sv.Name)
		}
		return outcome{}, notFound("backend %q: not known", req.Addr)
	}
	acted, err := s.admin.SetBackendState(ctx, sv.Name, req.Addr, req.State)
	if err != nil {
		return outcome{}, fmt.Errorf("%sset backend %s to %s: %w", servicePrefix(sv.Name), req.Addr, req.State, err)
	}
	return outcome{msg: fmt.Sprintf("%sbackend %s set to %s", servicePrefix(sv.Name), req.Addr, req.State), acted: acted}, nil
}

func (s *Server) actFailover(ctx context.Context, u User, req actionRequest) (outcome, error) {
	sv, err := s.service(req.Service)
	if err != nil {
		return outcome{}, err
	}
	acted, err := s.admin.RequestFailover(ctx, sv.Name)
	if err != nil {
		return outcome{}, fmt.Errorf("%srequest failover: %w", servicePrefix(sv.Name), err)
	}
	return outcome{msg: servicePrefix(sv.Name) + "planned failover requested", acted: acted}, nil
}

func (s *Server) actTransfer(ctx context.Context, u User, req actionRequest) (outcome, error) {
	if req.Node != "" {
		found := false
		for _, m := range s.src.Snapshot().Members {
			found = found || m.Name == req.Node
		}
		if !found {
			return outcome{}, notFound("node %q: not a cluster member", req.Node)
		}
	}
	acted, err := s.admin.TransferLeadership(ctx, req.Node)
	if err != nil {
		return outcome{}, fmt.Errorf("transfer leadership to %q: %w", req.Node, err)
	}
	if req.Node == "" {
		return outcome{msg: "leadership transfer requested", acted: acted}, nil
	}
	return outcome{msg: "leadership transfer to " + req.Node + " requested", acted: acted}, nil
}

func (s *Server) run(r *http.Request, u User, name string, act action, req actionRequest) (outcome, int, error) {
	ctx, cancel := context.WithTimeout(r.Context(), actionTimeout)
	defer cancel()
	out, err := act(ctx, u, req)
	log := s.logger.With("user", u.Name, "action", name, "service", req.Service, "addr", req.Addr, "state", req.State, "node", req.Node)
	if req.Op != "" {
		log = log.With("op", req.Op) // never the key
	}
	if err != nil {
		code := statusOf(err)
		log.Warn("admin action failed", "err", err, "status", code)
		return out, code, err
	}
	log.Info("admin action", "acted_on", out.acted.Node, "forwarded", out.acted.Forwarded)
	return out, http.StatusOK, nil
}

// flashText is an action's message for the page, saying where it ran.
func flashText(out outcome) string {
	switch {
	case out.acted.Forwarded:
		return out.msg + " (forwarded to the leader " + out.acted.Node + ", which carried it out)"
	case out.acted.Node != "":
		return out.msg + " (on " + out.acted.Node + ")"
	}
	return out.msg
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
		req := actionRequest{Service: r.PostForm.Get("service"), Addr: r.PostForm.Get("addr"), State: r.PostForm.Get("state"),
			Node: r.PostForm.Get("node"), Master: r.PostForm.Get("master")}
		if e := r.PostForm.Get("epoch"); e != "" {
			epoch, err := strconv.ParseInt(e, 10, 64)
			if err != nil {
				replyError(w, asJSON, http.StatusBadRequest, "epoch: not a number")
				return
			}
			req.Epoch = &epoch
		}
		out, code, err := s.run(r, u, r.URL.Path, act, req)
		if asJSON {
			replyResult(w, code, out, err)
			return
		}
		text := flashText(out)
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
		if q := r.URL.Query(); q.Has("service") {
			if req.Service != "" && req.Service != q.Get("service") {
				replyError(w, true, http.StatusBadRequest, fmt.Sprintf("service: %q in the body but %q in the query", req.Service, q.Get("service")))
				return
			}
			req.Service = q.Get("service")
		}
		out, code, err := s.run(r, u, r.URL.Path, act, req)
		replyResult(w, code, out, err)
	})
}

func wantsJSON(r *http.Request) bool {
	return strings.Contains(r.Header.Get("Accept"), "application/json")
}

type result struct {
	OK      bool   `json:"ok"`
	Message string `json:"message,omitempty"`
	Error   string `json:"error,omitempty"`
	// Node is the node that carried the action out; Forwarded says that
	// the node asked forwarded it to the leader.
	Node      string      `json:"node,omitempty"`
	Forwarded bool        `json:"forwarded,omitempty"`
	ID        uint64      `json:"id,omitempty"`   // failover: the request's ID (see Service.PlannedFailover)
	Keys      []KeyResult `json:"keys,omitempty"` // keys: one entry per node
}

func replyResult(w http.ResponseWriter, code int, out outcome, err error) {
	res := result{OK: err == nil, Message: out.msg, Node: out.acted.Node, Forwarded: out.acted.Forwarded, ID: out.acted.ID, Keys: out.keys}
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
