package proxy

import (
	"bytes"
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/redhaven/redhaven/e2e/redistest"
)

// TestTLSReadLoopStream: readLoop over a TLS connection read through a
// tlsFeed hands handle exactly the plaintext sent, in order, for records
// of every size (one byte to several full records per write), when
// handle stops the loop every few calls (what is left, decrypted or not,
// comes first the next time), with a small read buffer (a record handed
// out in pieces), and ends with io.EOF when the peer closes.
func TestTLSReadLoopStream(t *testing.T) {
	x := redistest.NewTLS(t)
	cert, err := tls.LoadX509KeyPair(x.CertFile, x.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var want []byte
	for i, size := range []int{1, 5, 100, 4095, 16384, 16385, 40000, 3, 70000, 17} {
		for j := 0; j < size; j++ {
			want = append(want, byte(i*31+j))
		}
	}
	sent := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			sent <- err
			return
		}
		defer c.Close()
		sc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}})
		rest := want
		for _, size := range []int{1, 5, 100, 4095, 16384, 16385, 40000, 3, 70000, 17} {
			if _, err := sc.Write(rest[:size]); err != nil {
				sent <- err
				return
			}
			rest = rest[size:]
			time.Sleep(time.Millisecond) // separate reads on the other side, sometimes
		}
		sent <- sc.Close()
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	f := newTLSFeed(raw)
	if f.raw == nil {
		t.Fatal("newTLSFeed: no raw descriptor for a TCP connection")
	}
	tc := tls.Client(f, &tls.Config{RootCAs: x.Pool, ServerName: "127.0.0.1"})
	c := &tlsBackend{Conn: tc, feed: f}
	defer c.Close()
	_ = raw.SetDeadline(time.Now().Add(20 * time.Second))
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	var got []byte
	buf := make([]byte, 1000)
	calls, loops := 0, 0
	space := func() []byte { return buf }
	handle := func(n int) bool {
		got = append(got, buf[:n]...)
		calls++
		return calls%3 != 0
	}
	for ; loops < 10000; loops++ {
		err := readLoop(c, space, handle, nil)
		if err == nil {
			continue // stopped by handle
		}
		if !isEOF(err) {
			t.Fatalf("readLoop after %d bytes: %v", len(got), err)
		}
		break
	}
	if err := <-sent; err != nil {
		t.Fatalf("sender: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("got %d bytes, want %d; first difference at %d", len(got), len(want), firstDiff(got, want))
	}
	if f.feeding || f.in != nil {
		t.Fatalf("after the loop: feeding %v, %d bytes held", f.feeding, len(f.in))
	}
}

func isEOF(err error) bool { return err != nil && err.Error() == "EOF" }

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
