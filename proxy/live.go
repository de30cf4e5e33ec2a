package proxy

import (
	"sync/atomic"
	"time"
)

// liveLimits are the settings a reload changes in a running proxy
// (SetLive); zero: the value from Config.
type liveLimits struct {
	holdTimeout atomic.Int64 // time.Duration
	maxClients  atomic.Int64
}

// SetLive changes proxy.hold_timeout and proxy.max_clients while the proxy
// runs (validated values). Sessions use the new hold timeout from their
// next wait; connections above a lowered max_clients stay, new ones are
// refused until the count is below it.
func (srv *Server) SetLive(holdTimeout time.Duration, maxClients int) {
	srv.live.holdTimeout.Store(int64(holdTimeout))
	srv.live.maxClients.Store(int64(maxClients))
}

func (srv *Server) holdTimeout() time.Duration {
	if v := srv.live.holdTimeout.Load(); v > 0 {
		return time.Duration(v)
	}
	return srv.cfg.HoldTimeout
}

func (srv *Server) maxClients() int64 {
	if v := srv.live.maxClients.Load(); v > 0 {
		return v
	}
	return int64(srv.cfg.MaxClients)
}
