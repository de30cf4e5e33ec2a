// Package proxy is redhaven's Redis proxy: client listeners (read-write and
// optional read-only), one session per client connection, full pipelining
// in both directions, and the session state that lets a client survive a
// master change. By default (proxy.multiplex) the stateless commands of
// many sessions share a few pipelined backend connections per Redis
// address (mux.go), and a session that uses per-connection state (MULTI,
// blocking commands, pub/sub, SELECT, its own AUTH...) moves to a backend
// connection of its own; proxy.multiplex: false gives every session its own
// (1:1). See DESIGN.md in this folder for the why, and the special-command
// table in commands.go.
package proxy
