package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// TLSConfig is proxy.tls: TLS on the client listeners (both of them).
type TLSConfig struct {
	// Enabled turns TLS on for proxy.listen and proxy.readonly_listen.
	Enabled bool `koanf:"enabled"`
	// CertFile and KeyFile are the server certificate (PEM, the chain
	// after the leaf) and its key. Reloaded on SIGHUP and when they change.
	CertFile string `koanf:"cert_file"`
	KeyFile  string `koanf:"key_file"`
	// ClientCAFile, when set, makes TLS mutual: a client must present a
	// certificate signed by one of these CAs.
	ClientCAFile string `koanf:"client_ca_file"`
	// MinVersion is "1.2" or "1.3".
	MinVersion string `koanf:"min_version"`
}

const (
	// tlsPollEvery: how often the certificate files are checked for a change.
	tlsPollEvery = 5 * time.Second
	// tlsHandshakeTimeout bounds a client's TLS handshake (a client that
	// connects and sends nothing must not hold a goroutine for long).
	tlsHandshakeTimeout = 10 * time.Second
)

func (c TLSConfig) validate() []error {
	if !c.Enabled {
		return nil
	}
	var errs []error
	if c.CertFile == "" {
		errs = append(errs, errors.New("proxy.tls.cert_file: required when proxy.tls.enabled is true"))
	}
	if c.KeyFile == "" {
		errs = append(errs, errors.New("proxy.tls.key_file: required when proxy.tls.enabled is true"))
	}
	if _, err := ParseTLSVersion(c.MinVersion); err != nil {
		errs = append(errs, fmt.Errorf("proxy.tls.min_version: %w", err))
	}
	return errs
}

// ParseTLSVersion reads "1.2" or "1.3" ("" is 1.2).
func ParseTLSVersion(v string) (uint16, error) {
	switch v {
	case "", "1.2":
		return tls.VersionTLS12, nil
	case "1.3":
		return tls.VersionTLS13, nil
	}
	return 0, fmt.Errorf("%q is not a supported TLS version (want 1.2 or 1.3)", v)
}

// tlsServer serves the listeners' TLS configuration and swaps it when the
// files change: connections made before keep their session, new
// handshakes get the new certificate (GetConfigForClient).
type tlsServer struct {
	cfg   TLSConfig
	base  *tls.Config // handed to tls.Server; asks cur for each handshake
	cur   atomic.Pointer[tls.Config]
	mu    sync.Mutex // one reload at a time
	stamp string     // the files' sizes and mtimes at the last load
}

func newTLSServer(cfg TLSConfig) (*tlsServer, error) {
	t := &tlsServer{cfg: cfg}
	t.base = &tls.Config{
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) { return t.cur.Load(), nil },
	}
	if _, err := t.reload(true); err != nil {
		return nil, err
	}
	return t, nil
}

// files are the configured files by key.
func (t *tlsServer) files() [][2]string {
	f := [][2]string{{"proxy.tls.cert_file", t.cfg.CertFile}, {"proxy.tls.key_file", t.cfg.KeyFile}}
	if t.cfg.ClientCAFile != "" {
		f = append(f, [2]string{"proxy.tls.client_ca_file", t.cfg.ClientCAFile})
	}
	return f
}

// fileStamp describes the files' current versions ("" and an error naming
// the key if one cannot be read).
func fileStamp(files [][2]string) (string, error) {
	s := ""
	for _, f := range files {
		fi, err := os.Stat(f[1])
		if err != nil {
			return "", fmt.Errorf("%s: %w", f[0], err)
		}
		s += fmt.Sprintf("%s:%d:%d;", f[1], fi.Size(), fi.ModTime().UnixNano())
	}
	return s, nil
}

// reload reads the files again, unless (force false) they did not change
// since the last load. On an error the previous configuration stays.
func (t *tlsServer) reload(force bool) (bool, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	stamp, err := fileStamp(t.files())
	if err != nil {
		return false, err
	}
	if !force && stamp == t.stamp {
		return false, nil
	}
	// Even a failed load is not retried until the files change again (a
	// half-written file is retried when the write completes).
	t.stamp = stamp
	c, err := loadServerTLS(t.cfg)
	if err != nil {
		return false, err
	}
	t.cur.Store(c)
	return true, nil
}

func loadServerTLS(cfg TLSConfig) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("proxy.tls.cert_file/key_file: %w", err)
	}
	minV, err := ParseTLSVersion(cfg.MinVersion)
	if err != nil {
		return nil, fmt.Errorf("proxy.tls.min_version: %w", err)
	}
	c := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: minV}
	if cfg.ClientCAFile != "" {
		pool, err := loadCAPool(cfg.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("proxy.tls.client_ca_file: %w", err)
		}
		c.ClientCAs = pool
		c.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return c, nil
}

func loadCAPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificate in it", file)
	}
	return pool, nil
}

// ReloadTLS reads proxy.tls's certificate, key and client CA files again
// (SIGHUP). Connections already made keep their session; an error keeps
// the certificate in use.
func (srv *Server) ReloadTLS() error {
	if srv.tls == nil {
		return nil
	}
	if _, err := srv.tls.reload(true); err != nil {
		srv.log.Warn("TLS certificate reload failed; keeping the one in use", "err", err)
		return err
	}
	srv.log.Info("TLS certificate reloaded", "cert_file", srv.cfg.TLS.CertFile)
	return nil
}

// tlsReloadLoop reloads the certificate files when their size or mtime
// changes (polled: no file-watching dependency, and it also sees a file
// replaced by a rename, as cert-manager style tools do).
func (srv *Server) tlsReloadLoop(ctx context.Context) {
	t := time.NewTicker(tlsPollEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		changed, err := srv.tls.reload(false)
		switch {
		case err != nil:
			srv.log.Warn("TLS certificate files changed but could not be loaded; keeping the one in use", "err", err)
		case changed:
			srv.log.Info("TLS certificate files changed; reloaded", "cert_file", srv.cfg.TLS.CertFile)
		}
	}
}

// startTLSSession does the TLS handshake of an accepted client in its own
// goroutine (a slow client must not hold up accept), then serves it. The
// session's goroutine count (wg) is taken before, so Run waits for the
// handshake too.
func (srv *Server) startTLSSession(ctx context.Context, l *listener, raw net.Conn) {
	srv.mu.Lock()
	if srv.stopping {
		srv.mu.Unlock()
		l.cur.Add(-1)
		srv.leave(raw)
		_ = raw.Close()
		return
	}
	srv.wg.Add(1)
	srv.mu.Unlock()
	go func() {
		c := newTLSConn(raw, srv.tls.base)
		hctx, cancel := context.WithTimeout(ctx, tlsHandshakeTimeout)
		err := c.HandshakeContext(hctx)
		cancel()
		if err != nil {
			l.tlsFailed.Add(1)
			l.cur.Add(-1)
			srv.leave(raw)
			srv.log.Debug("TLS handshake failed", "listener", l.name, "client_addr", raw.RemoteAddr().String(), "err", err)
			_ = c.Close()
			srv.wg.Done()
			return
		}
		s := newSession(srv, l, c, srv.nextID.Add(1))
		srv.mu.Lock()
		if srv.stopping {
			srv.mu.Unlock()
			l.cur.Add(-1)
			srv.leave(raw)
			_ = c.Close()
			srv.wg.Done()
			return
		}
		srv.sessions[s] = struct{}{}
		srv.mu.Unlock()
		s.serve()
	}()
}

// nonBlockingWriter is a connection with its own tryWrite (tlsConn).
type nonBlockingWriter interface {
	tryWrite(p []byte) (int, error)
}

// tlsConn is a client's TLS connection. Its socket writes never wait
// (tlsSock), so that writing to a client that does not read never blocks
// the session or a shared backend connection's reader (output.go's rule);
// tryWrite takes nothing while earlier ciphertext is still queued, which
// leaves the replies in the session's output, where the output limit
// counts them.
type tlsConn struct {
	*tls.Conn
	sock *tlsSock
}

func newTLSConn(raw net.Conn, cfg *tls.Config) *tlsConn {
	sock := &tlsSock{Conn: raw, feed: newTLSFeed(raw)}
	sock.drained = sync.NewCond(&sock.mu)
	return &tlsConn{Conn: tls.Server(sock, cfg), sock: sock}
}

func (c *tlsConn) fed() (*tls.Conn, *tlsFeed) { return c.Conn, c.sock.feed }

// tryWrite encrypts p unless earlier output still waits for the socket.
func (c *tlsConn) tryWrite(p []byte) (int, error) {
	if c.sock.busy() {
		return 0, nil
	}
	return c.Conn.Write(p)
}

// Write waits until earlier output is out, then encrypts p.
func (c *tlsConn) Write(p []byte) (int, error) {
	if err := c.sock.wait(); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}

// Close waits a little for queued output (a reply written just before
// the close, QUIT's +OK), then closes.
func (c *tlsConn) Close() error {
	c.sock.waitFor(time.Second)
	return c.Conn.Close()
}

// tlsSock is the TCP connection under a client's tls.Conn. Its Write never
// blocks: what the socket does not take now is queued and written by a
// goroutine that exists only while there is a queue.
type tlsSock struct {
	net.Conn
	feed     *tlsFeed // reads (tlsfeed.go)
	mu       sync.Mutex
	drained  *sync.Cond
	queue    []byte
	flushing bool
	err      error
}

func (t *tlsSock) Read(p []byte) (int, error) { return t.feed.Read(p) }

func (t *tlsSock) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.err != nil {
		return 0, t.err
	}
	if t.flushing {
		t.queue = append(t.queue, p...)
		return len(p), nil
	}
	n, err := tryWrite(t.Conn, p)
	if err != nil {
		t.err = err
		return n, err
	}
	if n < len(p) {
		t.queue = append(t.queue[:0], p[n:]...)
		t.flushing = true
		go t.flush()
	}
	return len(p), nil
}

// flush writes the queue, waiting for the socket (its deadlines apply).
func (t *tlsSock) flush() {
	var buf []byte
	for {
		t.mu.Lock()
		if len(t.queue) == 0 {
			t.flushing = false
			t.drained.Broadcast()
			t.mu.Unlock()
			return
		}
		buf, t.queue = t.queue, buf[:0]
		t.mu.Unlock()
		if _, err := t.Conn.Write(buf); err != nil {
			t.mu.Lock()
			t.err = err
			t.flushing = false
			t.queue = nil
			t.drained.Broadcast()
			t.mu.Unlock()
			return
		}
	}
}

func (t *tlsSock) busy() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.flushing
}

// wait returns once the queue is written (or writing it failed).
func (t *tlsSock) wait() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	for t.flushing {
		t.drained.Wait()
	}
	return t.err
}

// waitFor is wait bounded by d.
func (t *tlsSock) waitFor(d time.Duration) {
	if !t.busy() {
		return
	}
	done := make(chan struct{})
	go func() {
		_ = t.wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(d):
		_ = t.Conn.SetWriteDeadline(aLongTimeAgo) // ends the flusher, then wait
		<-done
	}
}

// dialBackend connects to a Redis backend, over TLS when redis.tls is on
// (BackendTLS), the handshake done within proxy.dial_timeout.
func (srv *Server) dialBackend(addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: srv.cfg.DialTimeout, KeepAlive: 15 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil || srv.cfg.BackendTLS == nil {
		return c, err
	}
	f := newTLSFeed(c)
	tc := tls.Client(f, srv.cfg.BackendTLS(addr))
	_ = c.SetDeadline(time.Now().Add(srv.cfg.DialTimeout))
	if err := tc.Handshake(); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("TLS handshake: %w", err)
	}
	_ = c.SetDeadline(time.Time{})
	return &tlsBackend{Conn: tc, feed: f}, nil
}
