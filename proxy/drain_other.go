//go:build !linux

package proxy

import "net"

// prepareClient: IP_TRANSPARENT is Linux only.
func (srv *Server) prepareClient(net.Conn) {}

// corkClient: TCP_CORK is Linux only; the FIN follows the reply.
func corkClient(net.Conn) {}

// inputPending: not looked at elsewhere.
func inputPending(net.Conn) bool { return false }
