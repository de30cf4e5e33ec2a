package webui

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Server serves the stats page, the APIs, metrics and health endpoints.
type Server struct {
	cfg    Config
	src    Source
	admin  Admin // nil: read-only
	logger *slog.Logger

	ln      net.Listener
	sock    net.Listener // the admin socket; nil when http.admin_socket is ""
	tls     *tls.Config
	handler http.Handler
	users   atomic.Pointer[map[string]User] // http.auth by name; replaced by SetUsers
	secret  []byte                          // CSRF HMAC key, random per process

	passwords    *passwordChecker
	authRefused  *prometheus.CounterVec // {reason}: wrong, limited, busy
	limitedDelay time.Duration          // a 429 for too many wrong passwords waits this long...
	delayed      chan struct{}          // ...while a slot is free here
	gateDelay    time.Duration          // a connection refused at accept waits this long (gateListener)
	gateRate     int                    // connections a second from untrusted addresses to net/http (gateListener)
}

// Bounds of the delayed 429 answers (see refuseAuth).
const (
	limitedDelay = time.Second
	maxDelayed   = 256
)

func (s *Server) storeUsers(list []User) {
	users := make(map[string]User, len(list))
	for _, u := range list {
		users[u.Name] = u
	}
	s.users.Store(&users)
}

// SetUsers replaces the http.auth users while the server runs (a reload;
// the list is valid, see Config.Validate). Requests from then on are
// checked against the new list; remembered credentials are forgotten, so
// a changed or removed password stops working at once. An empty list
// makes the interface read-only and open, as at start.
func (s *Server) SetUsers(list []User) {
	s.storeUsers(list)
	s.passwords.forget()
}

// New validates cfg and binds cfg.Listen; it starts nothing (see Run).
// admin may be nil: then the interface is read-only.
func New(cfg Config, src Source, admin Admin, logger *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if src == nil {
		return nil, errors.New("webui: nil Source")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	pc, err := newPasswordChecker()
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:          cfg,
		src:          src,
		admin:        admin,
		logger:       logger.With("component", "webui"),
		secret:       make([]byte, 32),
		passwords:    pc,
		limitedDelay: limitedDelay,
		gateDelay:    gateDelay,
		gateRate:     gateAdmitRate,
		delayed:      make(chan struct{}, maxDelayed),
		authRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "redhaven_http_auth_refused_total",
			Help: "Basic-auth credentials refused: wrong (no or wrong credentials, 401), limited (too many wrong passwords, 429), busy (bcrypt slot full, 503).",
		}, []string{"reason"}),
	}
	s.storeUsers(cfg.Auth)
	if _, err := rand.Read(s.secret); err != nil {
		return nil, fmt.Errorf("webui: csrf secret: %w", err)
	}
	if cfg.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("http.tls_cert %s, http.tls_key %s: %w", cfg.TLSCert, cfg.TLSKey, err)
		}
		s.tls = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	h, err := s.routes()
	if err != nil {
		return nil, err
	}
	s.handler = h
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("http.listen %s: %w", cfg.Listen, err)
	}
	s.ln = ln
	if cfg.AdminSocket != "" {
		if s.sock, err = listenAdminSocket(cfg.AdminSocket); err != nil {
			_ = ln.Close()
			return nil, err
		}
	}
	return s, nil
}

// SocketPath is the admin socket's path, "" without one.
func (s *Server) SocketPath() string {
	if s.sock == nil {
		return ""
	}
	return s.cfg.AdminSocket
}

// Addr is the bound listen address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Close releases the listener of a Server whose Run will not be called
// (e.g. when a later part of node's wiring fails). Run closes it itself.
func (s *Server) Close() error {
	var errs []error
	if err := s.ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		errs = append(errs, fmt.Errorf("close http listener %s: %w", s.ln.Addr(), err))
	}
	if s.sock != nil {
		if err := s.sock.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, fmt.Errorf("close admin socket %s: %w", s.cfg.AdminSocket, err))
		}
	}
	return errors.Join(errs...)
}

// Handler serves every endpoint (without the listener), e.g. for httptest.
func (s *Server) Handler() http.Handler { return s.handler }

// Run serves until ctx ends, then shuts down gracefully (at most 5 seconds
// for requests in flight) and closes the listeners.
func (s *Server) Run(ctx context.Context) error {
	newServer := func(h http.Handler) *http.Server {
		return &http.Server{
			Handler:           h,
			ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout:       30 * time.Second,
			WriteTimeout:      actionTimeout + 30*time.Second, // an admin action may take actionTimeout
			IdleTimeout:       2 * time.Minute,
			ErrorLog:          slog.NewLogLogger(s.logger.Handler(), slog.LevelDebug),
			BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
		}
	}
	srv := newServer(s.handler)
	srv.TLSConfig = s.tls
	servers := []*http.Server{srv}
	errc := make(chan error, 2)
	ln := s.ln
	if s.authEnabled() {
		gl, err := newGateListener(s.ln, s.passwords.connVerdict, s.authRefused.WithLabelValues(authLimited.String()), s.tls == nil, s.gateDelay, s.gateRate)
		if err != nil {
			return fmt.Errorf("http %s: %w", s.ln.Addr(), err)
		}
		ln = gl
	}
	go func() {
		var err error
		if s.tls != nil {
			err = srv.ServeTLS(ln, "", "")
		} else {
			err = srv.Serve(ln)
		}
		errc <- fmt.Errorf("http serve %s: %w", s.ln.Addr(), err)
	}()
	if s.sock != nil {
		sockSrv := newServer(socketHandler(s.handler))
		servers = append(servers, sockSrv)
		go func() { errc <- fmt.Errorf("admin socket %s: %w", s.cfg.AdminSocket, sockSrv.Serve(s.sock)) }()
	}
	s.logger.Info("http serving", "addr", s.ln.Addr().String(), "tls", s.tls != nil, "auth", s.authEnabled(), "admin_socket", s.SocketPath())
	running := len(servers)
	select {
	case err := <-errc:
		running--
		for _, hs := range servers {
			_ = hs.Close()
		}
		for ; running > 0; running-- {
			<-errc
		}
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var errs []error
	for _, hs := range servers {
		if err := hs.Shutdown(sctx); err != nil {
			_ = hs.Close()
			errs = append(errs, fmt.Errorf("http shutdown: %w", err))
		}
	}
	for ; running > 0; running-- {
		if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// socketHandler marks requests as coming over the admin socket.
func socketHandler(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), socketKey{}, true)))
	})
}

func (s *Server) routes() (http.Handler, error) {
	reg := prometheus.NewRegistry()
	for _, c := range []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		newCollector(s.snapshot),
		s.authRefused,
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "redhaven_http_auth_bcrypt_total",
			Help: "bcrypt comparisons run for basic-auth passwords (the rest were answered from the caches of verified and refused credentials, or limited).",
		}, func() float64 { return float64(s.passwords.bcrypts.Load()) }),
	} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("webui: register metrics: %w", err)
		}
	}
	metrics := promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(s.logger.Handler(), slog.LevelWarn)})

	mux := http.NewServeMux()
	// Health: open, load balancers probe it.
	mux.HandleFunc("GET /health/live", s.handleLive)
	mux.HandleFunc("GET /health/ready", s.handleReady)
	mux.HandleFunc("GET /health/leader", s.handleLeader)
	// Reads: any configured user (or anyone without auth).
	mux.Handle("GET /{$}", s.reader(http.HandlerFunc(s.handlePage)))
	mux.Handle("GET /assets/style.css", s.reader(http.HandlerFunc(s.handleCSS)))
	mux.Handle("GET /api/v1/stats", s.reader(http.HandlerFunc(s.handleStatsJSON)))
	mux.Handle("GET /stats;csv", s.reader(http.HandlerFunc(s.handleStatsCSV)))
	mux.Handle("GET /stats.csv", s.reader(http.HandlerFunc(s.handleStatsCSV)))
	mux.Handle("GET /metrics", s.reader(metrics))
	// Actions: admin role; forms need the CSRF token, the JSON API the
	// application/json content type.
	mux.Handle("POST /admin/backend", s.adminForm(s.actBackend))
	mux.Handle("POST /admin/failover", s.adminForm(s.actFailover))
	mux.Handle("POST /admin/transfer-leadership", s.adminForm(s.actTransfer))
	mux.Handle("POST /api/v1/backends/{addr}/state", s.adminJSON(s.actBackend))
	mux.Handle("POST /api/v1/failover", s.adminJSON(s.actFailover))
	mux.Handle("POST /api/v1/transfer-leadership", s.adminJSON(s.actTransfer))
	mux.Handle("POST /api/v1/join", s.adminJSON(s.actJoin))
	mux.Handle("POST /api/v1/leave", s.adminJSON(s.actLeave))
	mux.Handle("POST /api/v1/members/remove", s.adminJSON(s.actRemoveMember))
	mux.Handle("POST /admin/route-reset", s.adminForm(s.actResetRoute))
	mux.Handle("POST /api/v1/route/reset", s.adminJSON(s.actResetRoute))
	mux.Handle("POST /api/v1/keys", s.adminJSON(s.actKeys))
	return securityHeaders(mux), nil
}

func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Referrer-Policy", "same-origin")
		h.ServeHTTP(w, r)
	})
}

// snapshot is the Source's snapshot, normalized (Snapshot.normalize), at
// a time.
func (s *Server) snapshot() Snapshot {
	snap := s.src.Snapshot()
	if snap.Time.IsZero() {
		snap.Time = time.Now()
	}
	snap.normalize()
	return snap
}
