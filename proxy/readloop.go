package proxy

import "net"

// plainReadLoop is readLoop over net.Conn.Read, for connections without a
// raw descriptor.
func plainReadLoop(c net.Conn, space func() []byte, handle func(n int) bool) error {
	for {
		p := space()
		n, err := c.Read(p)
		if n > 0 && !handle(n) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}
