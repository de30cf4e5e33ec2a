package vip

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// TestNetnsTickleResetsMovedConnection: a client connection to the VIP on
// host a, idle waiting for a reply (its request acknowledged: it sends
// nothing more); the VIP moves to host b. Without a word from anyone the
// client waits until its own timeout. A tickle ACK from a (which no longer
// has the address) makes the client answer to b, whose reset ends the
// connection at once. The untickled connection is the control.
func TestNetnsTickleResetsMovedConnection(t *testing.T) {
	requireNetns(t)
	n := nsCounter.Add(1)
	pid := os.Getpid()
	ns := func(x string) string { return fmt.Sprintf("rhtk-%d-%d-%s", pid, n, x) }
	ifn := func(x string) string { return fmt.Sprintf("rk%d%s%d", pid%100000, x, n) }
	for _, x := range []string{"sw", "a", "b", "c"} {
		ip(t, "netns", "add", ns(x))
		name := ns(x)
		t.Cleanup(func() { _ = runIP("netns", "del", name) })
		ip(t, "-n", ns(x), "link", "set", "lo", "up")
	}
	ip(t, "-n", ns("sw"), "link", "add", "br0", "type", "bridge")
	ip(t, "-n", ns("sw"), "link", "set", "br0", "up")
	hostIP := map[string]string{"a": "198.51.100.1/24", "b": "198.51.100.2/24", "c": "198.51.100.50/24"}
	for _, x := range []string{"a", "b", "c"} {
		ip(t, "link", "add", ifn(x), "netns", ns(x), "type", "veth", "peer", "name", ifn(x)+"p", "netns", ns("sw"))
		ip(t, "-n", ns("sw"), "link", "set", ifn(x)+"p", "master", "br0")
		ip(t, "-n", ns("sw"), "link", "set", ifn(x)+"p", "up")
		ip(t, "-n", ns(x), "link", "set", ifn(x), "up")
		ip(t, "-n", ns(x), "addr", "add", hostIP[x], "dev", ifn(x))
	}
	const vipAddr = "198.51.100.250"
	ip(t, "-n", ns("a"), "addr", "add", vipAddr+"/24", "dev", ifn("a"))

	var ln net.Listener
	var err error
	inNS(t, ns("a"), func() { ln, err = net.Listen("tcp", vipAddr+":6380") })
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var clients [2]net.Conn
	var servers [2]net.Conn
	for i := range clients {
		inNS(t, ns("c"), func() { clients[i], err = net.DialTimeout("tcp", vipAddr+":6380", 5*time.Second) })
		if err != nil {
			t.Fatalf("dial the VIP from c: %v", err)
		}
		defer clients[i].Close()
		if servers[i], err = ln.Accept(); err != nil {
			t.Fatal(err)
		}
		defer servers[i].Close()
		// A request the server reads and never answers: acknowledged, so
		// the client has nothing to retransmit.
		if _, err := clients[i].Write([]byte("PING\r\n")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 6)
		_ = servers[i].SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := servers[i].Read(buf); err != nil {
			t.Fatalf("server read: %v", err)
		}
	}
	time.Sleep(100 * time.Millisecond) // the ACKs are out

	// The VIP moves to b; c's neighbour entry follows (what b's gratuitous
	// ARP does, tested elsewhere).
	ip(t, "-n", ns("a"), "addr", "del", vipAddr+"/24", "dev", ifn("a"))
	ip(t, "-n", ns("b"), "addr", "add", vipAddr+"/24", "dev", ifn("b"))
	bMAC := linkIn(t, ns("b"), ifn("b")).HardwareAddr
	ip(t, "-n", ns("c"), "neigh", "replace", vipAddr, "lladdr", bMAC.String(), "dev", ifn("c"))

	var tk tickleSender
	inNS(t, ns("a"), func() { tk, err = openTickler() })
	if err != nil {
		t.Fatal(err)
	}
	defer tk.close()
	conn := Conn{
		Local:  netip.MustParseAddrPort(servers[0].LocalAddr().String()),
		Remote: netip.MustParseAddrPort(servers[0].RemoteAddr().String()),
	}
	began := time.Now()
	if err := tk.send([]Conn{conn}); err != nil {
		t.Fatalf("tickle: %v", err)
	}

	results := make(chan string, 2)
	for i, c := range clients {
		go func() {
			_ = c.SetReadDeadline(time.Now().Add(2500 * time.Millisecond))
			_, err := c.Read(make([]byte, 16))
			switch {
			case errors.Is(err, syscall.ECONNRESET):
				results <- fmt.Sprintf("%d reset after %v", i, time.Since(began).Round(time.Millisecond))
			case errors.Is(err, os.ErrDeadlineExceeded):
				results <- fmt.Sprintf("%d waiting", i)
			default:
				results <- fmt.Sprintf("%d: %v", i, err)
			}
		}()
	}
	got := map[byte]string{}
	for range clients {
		r := <-results
		got[r[0]] = r
	}
	t.Logf("tickled: %s; control: %s", got['0'], got['1'])
	if len(got['0']) < 8 || got['0'][2:7] != "reset" {
		t.Errorf("the tickled connection: %q, want a reset within 2.5 s", got['0'])
	}
	if got['1'] != "1 waiting" {
		t.Errorf("the untickled connection: %q, want still waiting (the control)", got['1'])
	}
}

// runIP runs `ip args...` and returns its error (for cleanups).
func runIP(args ...string) error {
	_, err := execIP(args...)
	return err
}

func execIP(args ...string) ([]byte, error) { return exec.Command("ip", args...).CombinedOutput() }
