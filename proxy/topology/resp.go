package topology

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
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

// maxBulk bounds a bulk string we accept; replies here are tiny.
const maxBulk = 64 << 20

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

// readValue parses one RESP2 value: string (simple or bulk), int64,
// []any, nil (null bulk or array) or redisError.
func readValue(br *bufio.Reader) (any, error) {
	line, err := readLine(br)
	if err != nil {
		return nil, err
	}
	if len(line) == 0 {
		return nil, errors.New("protocol error: empty line")
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
			return nil, fmt.Errorf("protocol error: bad integer %q", body)
		}
		return n, nil
	case '$':
		n, err := strconv.Atoi(body)
		if err != nil || n < -1 || n > maxBulk {
			return nil, fmt.Errorf("protocol error: bad bulk length %q", body)
		}
		if n == -1 {
			return nil, nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(br, buf); err != nil {
			return nil, err
		}
		if buf[n] != '\r' || buf[n+1] != '\n' {
			return nil, errors.New("protocol error: bulk string not terminated by CRLF")
		}
		return string(buf[:n]), nil
	case '*':
		n, err := strconv.Atoi(body)
		if err != nil || n < -1 || n > 1<<20 {
			return nil, fmt.Errorf("protocol error: bad array length %q", body)
		}
		if n == -1 {
			return nil, nil
		}
		arr := make([]any, n)
		for i := range arr {
			if arr[i], err = readValue(br); err != nil {
				return nil, err
			}
		}
		return arr, nil
	default:
		return nil, fmt.Errorf("protocol error: unexpected type byte %q", line[0])
	}
}

func readLine(br *bufio.Reader) (string, error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return "", errors.New("protocol error: line too long")
		}
		return "", err
	}
	if len(line) < 2 || line[len(line)-2] != '\r' {
		return "", errors.New("protocol error: line not terminated by CRLF")
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
