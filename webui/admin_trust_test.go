package webui_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redhaven/redhaven/e2e/testutil"
	"github.com/redhaven/redhaven/webui"
)

// memberAdmin is a testAdmin that can also join and leave.
type memberAdmin struct{ testAdmin }

func (a *memberAdmin) Join(ctx context.Context, addrs []string) (int, error) {
	return len(addrs), a.record("join " + strings.Join(addrs, ","))
}
func (a *memberAdmin) Leave(ctx context.Context) error { return a.record("leave") }

// Over TCP an action needs an admin user's credentials, from loopback too
// (the old exemption let any local process, or a browser on the node, act).
func TestAdminOverTCPNeedsAuth(t *testing.T) {
	src := &testSource{snap: sampleSnapshot()}
	admin := &memberAdmin{}
	open := newServer(t, openConfig(), src, admin).Handler()
	authed := newServer(t, authConfig(), src, admin).Handler()
	post := func(h http.Handler, remote, path, body string, u *user) *httptest.ResponseRecorder {
		req := httptest.NewRequest("POST", path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.RemoteAddr = remote
		if u != nil {
			req.SetBasicAuth(u.name, u.pw)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	tests := []struct {
		name     string
		h        http.Handler
		remote   string
		path     string
		body     string
		u        *user
		code     int
		wantCall string
	}{
		{"no users, loopback", open, "127.0.0.1:5555", "/api/v1/failover", "{}", nil, 403, ""},
		{"no users, ipv6 loopback", open, "[::1]:5555", "/api/v1/failover", "{}", nil, 403, ""},
		{"no users, remote", open, "192.0.2.7:5555", "/api/v1/failover", "{}", nil, 403, ""},
		{"no users, join from loopback", open, "127.0.0.1:5555", "/api/v1/join", `{"addrs":["127.0.0.1:7946"]}`, nil, 403, ""},
		{"no users, leave from loopback", open, "127.0.0.1:5555", "/api/v1/leave", "{}", nil, 403, ""},
		{"no users, form from loopback", open, "127.0.0.1:5555", "/admin/failover", "", nil, 403, ""},
		{"users, no credentials, loopback", authed, "127.0.0.1:5555", "/api/v1/failover", "{}", nil, 401, ""},
		{"users, reader, loopback", authed, "127.0.0.1:5555", "/api/v1/leave", "{}", &readerUser, 403, ""},
		{"users, admin, loopback", authed, "127.0.0.1:5555", "/api/v1/leave", "{}", &adminUser, 200, "leave"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(admin.Calls())
			rec := post(tt.h, tt.remote, tt.path, tt.body, tt.u)
			if rec.Code != tt.code {
				t.Fatalf("status %d, want %d: %s", rec.Code, tt.code, rec.Body)
			}
			calls := admin.Calls()[before:]
			if tt.wantCall == "" && len(calls) > 0 {
				t.Fatalf("unexpected admin calls %v", calls)
			}
			if tt.wantCall != "" && (len(calls) != 1 || calls[0] != tt.wantCall) {
				t.Fatalf("admin calls %v, want [%s]", calls, tt.wantCall)
			}
		})
	}
}

// A POST naming a host the agent does not serve under (DNS rebinding, a
// foreign page's form) is refused before its credentials count, even with
// an admin's valid credentials.
func TestForeignHostOrOrigin(t *testing.T) {
	src := &testSource{snap: sampleSnapshot()}
	admin := &testAdmin{}
	cfg := authConfig()
	cfg.AllowedHosts = []string{"redhaven.example.net", "proxy.example.net:8443"}
	s := newServer(t, cfg, src, admin)
	h := s.Handler()
	_, port, _ := net.SplitHostPort(s.Addr().String())
	host, _ := os.Hostname()
	tests := []struct {
		name, host, origin string
		code               int
	}{
		{"listen address", "127.0.0.1:" + port, "", 200},
		{"localhost with port", "localhost:" + port, "", 200},
		{"ipv6 loopback", "[::1]:" + port, "", 200},
		{"own host name", host + ":" + port, "", 200},
		{"allowed host, any port", "redhaven.example.net", "", 200},
		{"allowed host:port", "proxy.example.net:8443", "https://proxy.example.net:8443", 200},
		{"same origin", "127.0.0.1:" + port, "http://127.0.0.1:" + port, 200},
		{"rebinding name", "evil.example.org:" + port, "", 403},
		{"localhost on another port", "localhost:1", "", 403},
		{"allowed host, wrong port", "proxy.example.net:9000", "", 403},
		{"foreign origin", "127.0.0.1:" + port, "http://evil.example.org", 403},
		{"foreign origin port", "127.0.0.1:" + port, "http://127.0.0.1:1", 403},
		{"null origin", "127.0.0.1:" + port, "null", 403},
		{"empty host", "", "", 403},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(admin.Calls())
			for _, path := range []string{"/api/v1/failover", "/admin/failover"} {
				req := httptest.NewRequest("POST", path, strings.NewReader("{}"))
				req.Host = tt.host
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Accept", "application/json")
				if tt.origin != "" {
					req.Header.Set("Origin", tt.origin)
				}
				req.SetBasicAuth(adminUser.name, adminUser.pw)
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				want := tt.code
				if path == "/admin/failover" && want == 200 {
					want = 403 // the form has no CSRF token: past the host check, refused there
				}
				if rec.Code != want {
					t.Errorf("%s: status %d, want %d: %s", path, rec.Code, want, rec.Body)
				}
				if tt.code == 403 && !strings.Contains(rec.Body.String(), "http.allowed_hosts") {
					t.Errorf("%s: refusal does not say how to allow the host: %s", path, rec.Body)
				}
			}
			if n := len(admin.Calls()) - before; (tt.code == 200) != (n == 1) {
				t.Errorf("%d admin calls", n)
			}
		})
	}
}

// socketClient is an HTTP client that dials the admin socket.
func socketClient(path string) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}
}

// shortDir is a temp dir with a short path (a socket path has at most 107
// bytes), removed at the end of the test.
func shortDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "rh-sock-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// Over the admin socket every request is an admin's, with or without
// http.auth users; the socket is mode 0660 and goes away with the server.
func TestAdminSocket(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  webui.Config
	}{{"no users", openConfig()}, {"users", authConfig()}} {
		t.Run(tc.name, func(t *testing.T) {
			src := &testSource{snap: sampleSnapshot()}
			admin := &memberAdmin{}
			cfg := tc.cfg
			cfg.AdminSocket = filepath.Join(shortDir(t), "run", "admin.sock") // the directory is made
			s := newServer(t, cfg, src, admin)
			if s.SocketPath() != cfg.AdminSocket {
				t.Fatalf("SocketPath = %q", s.SocketPath())
			}
			fi, err := os.Stat(cfg.AdminSocket)
			if err != nil || fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != webui.SocketMode {
				t.Fatalf("socket file: %v %v", fi.Mode(), err)
			}
			runServer(t, s)
			c := socketClient(cfg.AdminSocket)
			// Host as the CLI sends it: not checked over the socket.
			post := func(path, body string) (int, string) {
				req, _ := http.NewRequest("POST", "http://redhaven"+path, strings.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				resp, err := c.Do(req)
				if err != nil {
					t.Fatalf("POST %s over the socket: %v", path, err)
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				return resp.StatusCode, string(b)
			}
			resp, err := c.Get("http://redhaven/api/v1/stats")
			if err != nil {
				t.Fatal(err)
			}
			var st struct{ Node string }
			_ = json.NewDecoder(resp.Body).Decode(&st)
			resp.Body.Close()
			if resp.StatusCode != 200 || st.Node != "node1" {
				t.Fatalf("stats over the socket: %d %+v", resp.StatusCode, st)
			}
			if code, body := post("/api/v1/failover", "{}"); code != 200 {
				t.Fatalf("failover over the socket: %d %s", code, body)
			}
			if code, body := post("/api/v1/join", `{"addrs":["127.0.0.1:7946"]}`); code != 200 {
				t.Fatalf("join over the socket: %d %s", code, body)
			}
			if got := admin.Calls(); len(got) != 2 || got[0] != "failover" || got[1] != "join 127.0.0.1:7946" {
				t.Fatalf("admin calls %v", got)
			}
			// A second server on the same path is refused while the first serves.
			cfg2 := cfg
			if _, err := webui.New(cfg2, src, admin, quietLogger()); err == nil || !strings.Contains(err.Error(), "in use") {
				t.Fatalf("second agent on the same socket: %v", err)
			}
		})
	}
}

// A stale socket file (an agent killed with -9) is replaced; a file that is
// not a socket is not touched.
func TestAdminSocketStaleAndForeignFiles(t *testing.T) {
	dir := shortDir(t)
	src := &testSource{snap: sampleSnapshot()}
	stale := filepath.Join(dir, "stale.sock")
	l, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	cfg := openConfig()
	cfg.AdminSocket = stale
	if s, err := webui.New(cfg, src, nil, quietLogger()); err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	} else {
		s.Close()
	}
	plain := filepath.Join(dir, "plain")
	os.WriteFile(plain, []byte("x"), 0o600)
	cfg.AdminSocket = plain
	if _, err := webui.New(cfg, src, nil, quietLogger()); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("plain file: %v", err)
	}
	if b, _ := os.ReadFile(plain); string(b) != "x" {
		t.Fatal("plain file changed")
	}
}

// socketProbeEnv makes the test binary a probe (see TestSocketProbe): it
// connects to the socket named there and exits 0 on success, 3 when the
// connection was refused for permissions.
const socketProbeEnv = "REDHAVEN_TEST_SOCKET_PROBE"

// TestSocketProbe is not a test: it is the child that
// TestAdminSocketGroup starts as another user.
func TestSocketProbe(t *testing.T) {
	path := os.Getenv(socketProbeEnv)
	if path == "" {
		t.Skip("helper process of TestAdminSocketGroup")
	}
	resp, err := socketClient(path).Post("http://redhaven/api/v1/failover", "application/json", strings.NewReader("{}"))
	if errors.Is(err, syscall.EACCES) {
		os.Exit(3)
	}
	if err != nil {
		t.Fatalf("probe: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("probe: status %d", resp.StatusCode)
	}
	os.Exit(0)
}

// Only the socket's group (and root) may use the admin socket: a process
// of another user in the socket's group acts, one outside it cannot even
// connect. Needs root to create the users' processes.
func TestAdminSocketGroup(t *testing.T) {
	if os.Geteuid() != 0 {
		testutil.Require(t, "netns", "not root: cannot start processes as other users")
	}
	const (
		uid      = 65534 // nobody
		sockGid  = 64999 // the socket's group; the probe is in it or not
		otherGid = 65534
	)
	dir := shortDir(t)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// The test binary lives in a private build dir: copy it where nobody
	// may run it.
	self, err := os.ReadFile("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "probe.test")
	if err := os.WriteFile(bin, self, 0o755); err != nil {
		t.Fatal(err)
	}
	src := &testSource{snap: sampleSnapshot()}
	admin := &testAdmin{}
	cfg := openConfig()
	cfg.AdminSocket = filepath.Join(dir, "admin.sock")
	s := newServer(t, cfg, src, admin)
	if err := os.Chown(cfg.AdminSocket, 0, sockGid); err != nil {
		t.Fatal(err)
	}
	runServer(t, s)
	probe := func(gid uint32) int {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, "-test.run=^TestSocketProbe$")
		cmd.Env = []string{socketProbeEnv + "=" + cfg.AdminSocket, "PATH=/usr/bin:/bin"}
		cmd.Dir = dir
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid, Groups: []uint32{}}}
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			if ee.ExitCode() != 3 {
				t.Logf("probe output: %s", out)
			}
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatalf("probe: %v %s", err, out)
		}
		return 0
	}
	if code := probe(sockGid); code != 0 {
		t.Fatalf("user in the socket's group: exit %d, want 0 (connected, acted)", code)
	}
	if c := admin.Calls(); len(c) != 1 {
		t.Fatalf("admin calls %v after the group member's failover", c)
	}
	if code := probe(otherGid); code != 3 {
		t.Fatalf("user outside the socket's group: exit %d, want 3 (connect refused)", code)
	}
	if c := admin.Calls(); len(c) != 1 {
		t.Fatalf("admin calls %v: the outsider acted", c)
	}
}

// No password, nor its base64 form or its hash, reaches a log line (at
// debug level) or an answer, whatever the outcome of the request.
func TestNoSecretsInLogsOrAnswers(t *testing.T) {
	var logs strings.Builder
	var mu sync.Mutex
	logger := slog.New(slog.NewTextHandler(lockedWriter{&mu, &logs}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	src := &testSource{snap: sampleSnapshot()}
	cfg := authConfig()
	s, err := webui.New(cfg, src, &testAdmin{}, logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	h := s.Handler()
	const wrongPW = "wrong-Secret-4711"
	var answers strings.Builder
	for _, tc := range []struct {
		method, path, host, body string
		u                        user
	}{
		{"GET", "/", testHost, "", adminUser},
		{"GET", "/api/v1/stats", testHost, "", adminUser},
		{"GET", "/stats;csv", testHost, "", readerUser},
		{"GET", "/metrics", testHost, "", adminUser},
		{"GET", "/api/v1/stats", testHost, "", user{"alice", wrongPW, ""}},
		{"POST", "/api/v1/failover", testHost, "{}", user{"alice", wrongPW, ""}},
		{"POST", "/api/v1/failover", testHost, "{}", adminUser},
		{"POST", "/admin/failover", testHost, "csrf=forged", adminUser},
		{"POST", "/api/v1/failover", "evil.example.org", "{}", adminUser},
	} {
		req := httptest.NewRequest(tc.method, tc.path, strings.NewReader(tc.body))
		req.Host = tc.host
		if tc.method == "POST" && strings.HasPrefix(tc.path, "/api/") {
			req.Header.Set("Content-Type", "application/json")
		} else if tc.method == "POST" {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		req.SetBasicAuth(tc.u.name, tc.u.pw)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		answers.WriteString(rec.Body.String())
		for k, v := range rec.Header() {
			answers.WriteString(k + ": " + strings.Join(v, ",") + "\n")
		}
	}
	mu.Lock()
	logged := logs.String()
	mu.Unlock()
	if !strings.Contains(logged, "admin action") {
		t.Fatalf("the test logged nothing useful:\n%s", logged)
	}
	for _, secret := range []string{adminUser.pw, readerUser.pw, wrongPW, hashes()["alice"], hashes()["bob"],
		base64.StdEncoding.EncodeToString([]byte("alice:" + adminUser.pw))} {
		if strings.Contains(logged, secret) {
			t.Errorf("a log line carries %q:\n%s", secret, logged)
		}
		if strings.Contains(answers.String(), secret) {
			t.Errorf("an answer carries %q", secret)
		}
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
