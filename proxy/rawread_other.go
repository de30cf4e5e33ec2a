//go:build !unix

package proxy

import "net"

func readLoop(c net.Conn, space func() []byte, handle func(n int) bool, idle func()) error {
	return plainReadLoop(c, space, handle)
}

func tryWrite(c net.Conn, p []byte) (int, error) {
	if nb, ok := c.(nonBlockingWriter); ok {
		return nb.tryWrite(p) // TLS (tls.go)
	}
	return c.Write(p)
}
