package topology

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// This file is a deliberately small RESP2 client: enough for ROLE,
// SENTINEL MASTER/REPLICAS/FAILOVER, AUTH and SUBSCRIBE. The proxy package
// may import only redcon and the standard library, so no Redis client
// library is used here.

// ErrAuth marks a refused AUTH (wrong password, unknown user, or a node
// that demands a password none was configured for).
var ErrAuth = errors.New("auth failed")

// redisError is an error reply ("-ERR ...", "-WRONGPASS ...").
type redisError string

func (e redisError) Error() string { return string(e) }

// respConn is one connection to a Redis node or a Sentinel. It is used by
// one goroutine at a time, except close and interrupt, which are safe to
// call from anywhere.
type respConn struct {
	addr string
	nc   net.Conn
	br   *bufio.Reader
	bw   *bufio.Writer
}

// credentials are the AUTH arguments; both empty means no AUTH.
type credentials struct {
	username string
	password string
	tls      *ClientTLS // redis.tls; nil: plain TCP
}

// dialRESP connects to addr within timeout and authenticates when creds
// say so. An AUTH refusal is returned wrapping ErrAuth.
func dialRESP(ctx context.Context, addr string, creds credentials, timeout time.Duration) (*respConn, error) {
	d := net.Dialer{Timeout: timeout}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	if creds.tls != nil {
		if nc, err = startTLS(ctx, nc, addr, creds.tls.For(addr), timeout); err != nil {
			return nil, err
		}
	}
	c := &respConn{addr: addr, nc: nc, br: bufio.NewReaderSize(nc, 4096), bw: bufio.NewWriterSize(nc, 1024)}
	if creds.password != "" {
		args := []string{"AUTH", creds.password}
		if creds.username != "" {
			args = []string{"AUTH", creds.username, creds.password}
		}
		if _, err := c.do(timeout, args...); err != nil {
			c.close()
			var re redisError
			switch {
			case errors.Is(err, ErrAuth):
				return nil, err
			case errors.As(err, &re):
				return nil, fmt.Errorf("%w on %s: %s", ErrAuth, addr, re)
			}
			return nil, fmt.Errorf("auth on %s: %w", addr, err)
		}
	}
	return c, nil
}

func (c *respConn) close() { _ = c.nc.Close() }

// interrupt makes a blocked read return at once (with a timeout error).
func (c *respConn) interrupt() { _ = c.nc.SetReadDeadline(time.Now()) }

// do sends one command and reads its reply within timeout. A Redis error
// reply comes back as a redisError (the connection stays usable); any
// other error means the connection must be dropped.
func (c *respConn) do(timeout time.Duration, args ...string) (any, error) {
	if err := c.send(timeout, args...); err != nil {
		return nil, err
	}
	_ = c.nc.SetReadDeadline(time.Now().Add(timeout))
	v, err := readValue(c.br)
	if err != nil {
		return nil, fmt.Errorf("read reply to %s from %s: %w", args[0], c.addr, err)
	}
	if re, ok := v.(redisError); ok {
		if isAuthReply(string(re)) {
			return nil, fmt.Errorf("%w on %s: %s", ErrAuth, c.addr, re)
		}
		return nil, re
	}
	return v, nil
}

// send writes one command as a RESP array of bulk strings.
func (c *respConn) send(timeout time.Duration, args ...string) error {
	_ = c.nc.SetWriteDeadline(time.Now().Add(timeout))
	c.bw.WriteString("*")
	c.bw.WriteString(strconv.Itoa(len(args)))
	c.bw.WriteString("\r\n")
	for _, a := range args {
		c.bw.WriteString("$")
		c.bw.WriteString(strconv.Itoa(len(a)))
		c.bw.WriteString("\r\n")
		c.bw.WriteString(a)
		c.bw.WriteString("\r\n")
	}
	if err := c.bw.Flush(); err != nil {
		return fmt.Errorf("send %s to %s: %w", args[0], c.addr, err)
	}
	return nil
}

// waitReadable blocks until the peer sends something, the connection is
// closed, or the read deadline (set by the caller) passes or is moved to
// now by interrupt. It returns nil when data is ready, errIdle on a
// timeout, and the read error otherwise (EOF when the peer went away: a
// killed redis-server is noticed here at once).
func (c *respConn) waitReadable() error {
	_, err := c.br.Peek(1)
	if err == nil {
		return nil
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return errIdle
	}
	return err
}

var errIdle = errors.New("idle")

// isAuthReply tells whether an error reply means the credentials are wrong
// or missing.
func isAuthReply(s string) bool {
	return strings.HasPrefix(s, "WRONGPASS") || strings.HasPrefix(s, "NOAUTH") ||
		strings.HasPrefix(s, "ERR invalid password") || strings.HasPrefix(s, "ERR invalid username-password") ||
		strings.Contains(s, "without any password configured")
}

// Reply limits. A reply is read as its bytes arrive: arrays grow as
// elements are read and bulk strings as their bytes come in, so nothing is
// allocated from a declared length, and a hostile or broken peer costs at
// most these bounds (a few MB) before its connection is closed. The sizes
// leave wide room for what the watcher reads from a large deployment:
// ROLE (depth 3, one entry per replica), SENTINEL REPLICAS (depth 2, ~45
// elements per replica), INFO replication (one bulk, ~80 bytes per
// replica), pub/sub messages (depth 1).
const (
	// maxDepth is how deeply arrays may nest (the top-level value is depth 1).
	maxDepth = 8
	// maxArrayLen bounds one array's declared element count.
	maxArrayLen = 1 << 16
	// maxBulk bounds one bulk string.
	maxBulk = 1 << 20
	// maxReplyElements bounds the values in one reply, all levels together
	// (SENTINEL REPLICAS of ~3,000 replicas).
	maxReplyElements = 1 << 17
	// maxReplyBytes bounds the bytes of one reply, lines and bulk
	// strings together.
	maxReplyBytes = 4 << 20
	// arrayPresize is the most an array is sized for before its
	// elements arrive.
	arrayPresize = 16
)

// errProtocol marks a reply that breaks RESP or the limits above. The
// connection it came from is out of step and must be closed.
var errProtocol = errors.New("protocol error")

func protocolErr(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errProtocol}, args...)...)
}

// readValue parses one RESP2 value: string (simple or bulk), int64,
// []any, nil (null bulk or array) or redisError, within the reply limits.
func readValue(br *bufio.Reader) (any, error) {
	r := replyReader{br: br}
	return r.value(1)
}

// replyReader reads one reply and counts what it has taken so far.
type replyReader struct {
	br       *bufio.Reader
	elements int
	bytes    int
}

// value reads one value at nesting depth depth. Recursion is bounded by
// maxDepth.
func (r *replyReader) value(depth int) (any, error) {
	r.elements++
	if r.elements > maxReplyElements {
		return nil, protocolErr("reply has more than %d elements", maxReplyElements)
	}
	line, err := readLine(r.br)
	if err != nil {
		return nil, err
	}
	if err := r.take(len(line) + 2); err != nil {
		return nil, err
	}
	if len(line) == 0 {
		return nil, protocolErr("empty line")
	}
	body := line[1:]
	switch line[0] {
	case '+':
		return body, nil
	case '-':
		return redisError(body), nil
	case ':':
		n, err := strconv.ParseInt(body, 10, 64)
		if err != nil {
			return nil, protocolErr("bad integer %q", body)
		}
		return n, nil
	case '$':
		n, err := strconv.Atoi(body)
		if err != nil || n < -1 {
			return nil, protocolErr("bad bulk length %q", shorten(body, 24))
		}
		if n > maxBulk {
			return nil, protocolErr("bulk length %d above the limit of %d", n, maxBulk)
		}
		if n == -1 {
			return nil, nil
		}
		if err := r.take(n + 2); err != nil {
			return nil, err
		}
		return r.bulk(n)
	case '*':
		n, err := strconv.Atoi(body)
		if err != nil || n < -1 {
			return nil, protocolErr("bad array length %q", shorten(body, 24))
		}
		if n > maxArrayLen {
			return nil, protocolErr("array length %d above the limit of %d", n, maxArrayLen)
		}
		if n == -1 {
			return nil, nil
		}
		if n > 0 && depth >= maxDepth {
			return nil, protocolErr("values nested deeper than %d levels", maxDepth)
		}
		arr := make([]any, 0, min(n, arrayPresize))
		for range n {
			v, err := r.value(depth + 1)
			if err != nil {
				return nil, err
			}
			arr = append(arr, v)
		}
		return arr, nil
	default:
		return nil, protocolErr("unexpected type byte %q", line[0])
	}
}

// take counts n more bytes of the reply against maxReplyBytes.
func (r *replyReader) take(n int) error {
	if r.bytes += n; r.bytes > maxReplyBytes {
		return protocolErr("reply longer than %d bytes", maxReplyBytes)
	}
	return nil
}

// bulk reads an n-byte bulk string and its CRLF. The string grows as the
// bytes arrive (at most one buffer's worth is read at a time), so a
// declared length costs nothing until the peer sends it.
func (r *replyReader) bulk(n int) (string, error) {
	if n+2 <= r.br.Size() {
		p, err := r.br.Peek(n + 2)
		if err != nil {
			return "", err
		}
		if p[n] != '\r' || p[n+1] != '\n' {
			return "", protocolErr("bulk string not terminated by CRLF")
		}
		s := string(p[:n])
		_, _ = r.br.Discard(n + 2)
		return s, nil
	}
	// Grow by doubling, capped at n: at most about 2n allocated, and only
	// as the bytes come in.
	buf := make([]byte, 0, r.br.Size())
	for len(buf) < n {
		if len(buf) == cap(buf) {
			grown := make([]byte, len(buf), min(n, 2*cap(buf)))
			copy(grown, buf)
			buf = grown
		}
		p, err := r.br.Peek(min(n-len(buf), cap(buf)-len(buf), r.br.Size()))
		if err != nil {
			return "", err
		}
		buf = append(buf, p...)
		_, _ = r.br.Discard(len(p))
	}
	p, err := r.br.Peek(2)
	if err != nil {
		return "", err
	}
	if p[0] != '\r' || p[1] != '\n' {
		return "", protocolErr("bulk string not terminated by CRLF")
	}
	_, _ = r.br.Discard(2)
	return string(buf), nil
}

func readLine(br *bufio.Reader) (string, error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return "", protocolErr("line longer than %d bytes", br.Size())
		}
		return "", err
	}
	if len(line) < 2 || line[len(line)-2] != '\r' {
		return "", protocolErr("line not terminated by CRLF")
	}
	return string(line[:len(line)-2]), nil
}

// asString converts a reply element to a string ("" for anything else).
func asString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case int64:
		return strconv.FormatInt(x, 10)
	}
	return ""
}

// asInt converts an integer or a numeric string reply element.
func asInt(v any) (int64, bool) {
	switch x := v.(type) {
	case int64:
		return x, true
	case string:
		n, err := strconv.ParseInt(x, 10, 64)
		return n, err == nil
	}
	return 0, false
}

// flatMap turns a flat [k1 v1 k2 v2 ...] reply into a map.
func flatMap(v any) map[string]string {
	arr, _ := v.([]any)
	m := make(map[string]string, len(arr)/2)
	for i := 0; i+1 < len(arr); i += 2 {
		m[asString(arr[i])] = asString(arr[i+1])
	}
	return m
}
