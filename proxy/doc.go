// Package proxy is redhaven's Redis proxy: client listeners (read-write and
// optional read-only), one session per client connection with its own
// backend connection (1:1), full pipelining in both directions, and the
// session state that lets a client survive a master change (see DESIGN.md
// in this folder for the why, and the special-command table in commands.go).
package proxy
