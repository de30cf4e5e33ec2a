package proxy

import (
	"time"
)

// Live is the part of Config a reload changes while the proxy runs
// (SetLive). Everything else needs a restart (a hand-over: clients keep
// their connections).
type Live struct {
	HoldTimeout       time.Duration // proxy.hold_timeout
	MaxClients        int           // proxy.max_clients
	PreferReplica     string        // proxy.prefer_replica
	ClientOutputLimit int64         // proxy.client_output_limit
	AuthTimeout       time.Duration // proxy.auth_timeout
	ClientIdleTimeout time.Duration // proxy.client_idle_timeout
	MaxClientsPerIP   int           // proxy.max_clients_per_ip
}

// Live returns the live part of c.
func (c Config) Live() Live {
	return Live{HoldTimeout: c.HoldTimeout, MaxClients: c.MaxClients, PreferReplica: c.PreferReplica,
		ClientOutputLimit: c.ClientOutputLimit, AuthTimeout: c.AuthTimeout, ClientIdleTimeout: c.ClientIdleTimeout,
		MaxClientsPerIP: c.MaxClientsPerIP}
}

// SetLive changes the live settings of a running proxy (validated values,
// see Config.Validate). Sessions use the new hold timeout from their next
// wait; connections above a lowered max_clients stay, new ones are
// refused until the count is below it; read-only connections follow
// prefer_replica when they next pick a replica (a new connection, or a
// route change); the output limit applies at the next reply, the auth
// and idle timeouts at the next sweep (4 a second), counted from the
// client's connection and last input as before; a lowered
// max_clients_per_ip closes no connection, it refuses new ones of an
// address at or above it.
func (srv *Server) SetLive(l Live) {
	srv.live.Store(&l)
}

// settings returns the live settings (the Config's until SetLive).
func (srv *Server) settings() *Live {
	if l := srv.live.Load(); l != nil {
		return l
	}
	l := srv.cfg.Live()
	srv.live.CompareAndSwap(nil, &l)
	return srv.live.Load()
}

func (srv *Server) holdTimeout() time.Duration { return srv.settings().HoldTimeout }

func (srv *Server) maxClients() int64 { return int64(srv.settings().MaxClients) }
