package webui

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
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

// The gate hands connections of addresses no user logged in from to
// net/http at most gateAdmitRate a second after a burst of gateAdmitBurst,
// waiting in a sleep (the P idle, so the runtime polls the network); those
// of an address a user logged in from, at once; refused ones are not paced.
func TestGatePacesUntrustedConnections(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	verdict := func(a netip.Addr) connVerdict {
		switch a.String() {
		case "127.0.0.2":
			return connTrusted
		case "127.0.0.3":
			return connRefuse
		}
		return connAdmit
	}
	limited := prometheus.NewCounter(prometheus.CounterOpts{Name: "limited"})
	gl, err := newGateListener(ln, verdict, limited, true, 0, gateAdmitRate)
	if err != nil {
		t.Fatal(err)
	}
	defer gl.Close()
	clock := time.Now()
	var slept []time.Duration
	gl.now = func() time.Time { return clock }
	gl.sleep = func(d time.Duration) { slept = append(slept, d); clock = clock.Add(d) }
	gl.admit = bucket{tokens: gateAdmitBurst, at: clock}
	addr := ln.Addr().String()
	dial := func(ip string) net.Conn {
		t.Helper()
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	accept := func() net.Conn {
		t.Helper()
		c, err := gl.Accept()
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		return c
	}
	const extra = 10
	for i := 0; i < gateAdmitBurst+extra; i++ {
		dial("127.0.0.1")
		accept()
	}
	every := time.Second / gateAdmitRate
	if len(slept) != extra {
		t.Fatalf("%d untrusted connections (burst %d): %d waits, want %d", gateAdmitBurst+extra, gateAdmitBurst, len(slept), extra)
	}
	for i, d := range slept {
		if d < every*9/10 || d > every*11/10 {
			t.Errorf("wait %d: %v, want about %v", i, d, every)
		}
	}
	// Trusted: no wait even with the bucket empty; refused ones are not
	// returned and not paced (the next accepted one is the trusted one).
	n := len(slept)
	dial("127.0.0.3")
	dial("127.0.0.2")
	c := accept()
	if got := c.RemoteAddr().(*net.TCPAddr).IP.String(); got != "127.0.0.2" {
		t.Errorf("accepted a connection from %s, want 127.0.0.2 (127.0.0.3 refused)", got)
	}
	if len(slept) != n {
		t.Errorf("a trusted or a refused connection waited: %v", slept[n:])
	}
	// Time refills the burst.
	clock = clock.Add(time.Second)
	for i := 0; i < gateAdmitBurst; i++ {
		dial("127.0.0.4")
		accept()
	}
	if len(slept) != n {
		t.Errorf("after a second idle, a burst of %d waited %d times", gateAdmitBurst, len(slept)-n)
	}
}

func TestJitter(t *testing.T) {
	d := 4 * time.Second
	lo, hi := d*2, time.Duration(0)
	for range 1000 {
		j := jitter(d)
		lo, hi = min(lo, j), max(hi, j)
	}
	if lo < d || hi > d+d/4 || hi-lo < d/8 {
		t.Errorf("jitter(%v) over 1000 draws in [%v, %v], want within [%v, %v] and spread", d, lo, hi, d, d+d/4)
	}
	if jitter(0) != 0 {
		t.Error("jitter(0) != 0")
	}
}
