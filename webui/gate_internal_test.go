package webui

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// clientFrom is an HTTP client whose connections come from the loopback
// address ip.
func clientFrom(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext}, Timeout: 10 * time.Second}
}

func statsFrom(t *testing.T, c *http.Client, base, name, pw string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("GET", base+"/api/v1/stats", nil)
	req.SetBasicAuth(name, pw)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET as %s from %v: %v", name, c, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// silentConn connects from ip and sends nothing: only the gate answers
// such a connection (net/http would wait for a request).
func silentConn(t *testing.T, ip, addr string, wait time.Duration) (string, time.Duration) {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	t0 := time.Now()
	_ = c.SetReadDeadline(time.Now().Add(wait))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "error: " + err.Error(), time.Since(t0)
	}
	return strings.TrimSpace(line), time.Since(t0)
}

// Over real loopback connections: a refused request closes its connection;
// a new connection from an address with no token left is answered 429 at
// accept, after the gate's delay and without reading a request (and
// counted); an address a user logged in from is never refused there, nor
// is a new one; an address that keeps trying while the global bucket is
// empty runs out of its own tokens.
func TestGateRefusesLimitedAddresses(t *testing.T) {
	s, cc := floodServer(t)
	s.gateDelay = 300 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
			// The gate waits on a copy of the listener's descriptor: both
			// must be closed for the port to stop listening.
			if c, err := net.DialTimeout("tcp", s.Addr().String(), time.Second); err == nil {
				c.Close()
				t.Error("the HTTP port still accepts connections after Run returned")
			}
		case <-time.After(15 * time.Second):
			t.Error("Run did not return within 15s of cancel")
		}
	})
	addr := s.Addr().String()
	base := "http://" + addr
	// A new wrong password each time: a repeated one is answered from the
	// cache of refusals and would not spend the global bucket.
	seq := 0
	wrong := func() string { seq++; return "wrong" + strconv.Itoa(seq) }

	// 127.0.0.2 logs in, then floods: its 429 closes the connection, and it
	// keeps its way in with the right password.
	trusted := clientFrom("127.0.0.2")
	if r := statsFrom(t, trusted, base, "alice", "right"); r.StatusCode != 200 {
		t.Fatalf("right password: %d", r.StatusCode)
	}
	for i := 0; i < failBurst; i++ {
		if r := statsFrom(t, trusted, base, "alice", wrong()); r.StatusCode != 401 || !r.Close {
			t.Fatalf("wrong password %d: %d (close %v), want 401 and Connection: close", i, r.StatusCode, r.Close)
		}
	}
	if r := statsFrom(t, trusted, base, "alice", wrong()); r.StatusCode != 429 || !r.Close {
		t.Fatalf("wrong password beyond the burst: %d (close %v), want 429 and Connection: close", r.StatusCode, r.Close)
	}
	if line, _ := silentConn(t, "127.0.0.2", addr, 3*s.gateDelay); !strings.Contains(line, "timeout") {
		t.Errorf("a silent connection from an address a user logged in from got %q, want nothing (net/http waits for the request)", line)
	}
	if r := statsFrom(t, trusted, base, "alice", "right"); r.StatusCode != 200 {
		t.Errorf("right password from the limited address a user logged in from: %d", r.StatusCode)
	}

	// 127.0.0.3 never logged in: after its burst, refused at accept.
	mallory := clientFrom("127.0.0.3")
	for i := 0; i < failBurst+1; i++ {
		statsFrom(t, mallory, base, "alice", wrong())
	}
	calls := cc.calls.Load()
	limited := func() int {
		var m dto.Metric
		if err := s.authRefused.WithLabelValues("limited").Write(&m); err != nil {
			t.Fatal(err)
		}
		return int(m.GetCounter().GetValue())
	}
	before := limited()
	line, took := silentConn(t, "127.0.0.3", addr, 10*time.Second)
	if !strings.HasPrefix(line, "HTTP/1.1 429 ") {
		t.Errorf("a silent connection from a limited address got %q, want a 429", line)
	}
	if took < s.gateDelay/2 {
		t.Errorf("the 429 at accept came after %v, want about %v", took, s.gateDelay)
	}
	r := statsFrom(t, mallory, base, "alice", wrong())
	if r.StatusCode != 429 || r.Header.Get("Retry-After") != "10" {
		t.Errorf("request from a limited address: %d Retry-After %q, want 429 and 10", r.StatusCode, r.Header.Get("Retry-After"))
	}
	if r.Header.Get("X-Frame-Options") != "" {
		t.Error("the 429 came from the handler, not from the gate")
	}
	if got := limited() - before; got != 2 {
		t.Errorf("refusals at accept counted %d times as limited, want 2", got)
	}
	if cc.calls.Load() != calls {
		t.Error("bcrypt ran for a connection refused at accept")
	}

	// A new address is not refused at accept; its first wrong passwords
	// meet the empty global bucket (429) and still spend its own tokens.
	other := clientFrom("127.0.0.4")
	for i := 0; i < failBurst; i++ {
		if r := statsFrom(t, other, base, "alice", wrong()); r.StatusCode != 429 || r.Header.Get("X-Frame-Options") == "" {
			t.Fatalf("wrong password %d from a new address with the global bucket empty: %d (from the handler: %v)",
				i, r.StatusCode, r.Header.Get("X-Frame-Options") != "")
		}
	}
	if line, _ := silentConn(t, "127.0.0.4", addr, 10*time.Second); !strings.HasPrefix(line, "HTTP/1.1 429 ") {
		t.Errorf("after %d refused attempts, a silent connection got %q, want a 429", failBurst, line)
	}
	// A right password from yet another address: the cached credential.
	if r := statsFrom(t, clientFrom("127.0.0.5"), base, "alice", "right"); r.StatusCode != 200 {
		t.Errorf("cached credential from a new address: %d", r.StatusCode)
	}
}
