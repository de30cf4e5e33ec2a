package proxy

import (
	"sort"
	"sync/atomic"
)

// Stats is a snapshot of the proxy's counters (a plain value).
type Stats struct {
	Listeners []ListenerStats
	Backends  []BackendStats
	// RefusedCommands: commands refused by the proxy (deny_commands or
	// never allowed), by command
	RefusedCommands []RefusedCommand
	// BufferBytes is what clients' buffered input and unread output held
	// at the last sweep; BufferLimit is proxy.max_buffer_memory.
	BufferBytes, BufferLimit int64
	// ClientsClosed counts the clients the proxy closed or refused, by
	// reason (buffer_memory, output_limit, input_limit, auth_timeout,
	// idle_timeout, auth_failures, http, max_clients_per_ip,
	// protocol_error).
	ClientsClosed map[string]int64
}

// ListenerStats are the counters of one listener ("rw" or "ro").
type ListenerStats struct {
	Name            string
	Addr            string
	CurrentSessions int64
	MaxSessions     int64 // peak of CurrentSessions
	Limit           int64 // proxy.max_clients
	TotalSessions   int64
	Commands        int64 // commands received from clients
	BytesIn         int64 // from clients
	BytesOut        int64 // to clients
	Errors          int64 // error replies made by the proxy (refused, NOAUTH, MASTERDOWN, lost, protocol)
	Refused         int64 // connections refused by max_clients
	Resent          int64 // commands answered -READONLY by a demoted master and sent again to the new one
	MovedToOwn      int64 // sessions that left a shared connection for one of their own (proxy.multiplex)
	Parked          int64 // idle sessions parked now: no goroutine until their client sends
	AuthFailures    int64 // wrong proxy passwords, or WRONGPASS from Redis to an AUTH passed through
	TLSFailed       int64 // TLS handshakes that failed (proxy.tls)
}

// BackendStats are the counters of one Redis server address.
type BackendStats struct {
	Addr     string
	Sessions int64 // sessions connected to it now (on shared connections too)
	Shared   int64 // shared connections open to it (proxy.multiplex)
	Commands int64 // commands sent to it
	Errors   int64 // failed dials and connections lost
}

type backendStats struct {
	sessions, commands, errors atomic.Int64
	// lost: a connection to this address broke; the next one is checked
	// with a PING before use (dialTCP).
	lost atomic.Bool
}

func (srv *Server) backendStatsFor(addr string) *backendStats {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	st := srv.backends[addr]
	if st == nil {
		st = &backendStats{}
		srv.backends[addr] = st
	}
	return st
}

// Stats returns the current counters.
func (srv *Server) Stats() Stats {
	srv.mu.Lock()
	sessions := make([]*session, 0, len(srv.sessions))
	for s := range srv.sessions {
		sessions = append(sessions, s)
	}
	backends := make(map[string]*backendStats, len(srv.backends))
	for a, b := range srv.backends {
		backends[a] = b
	}
	srv.mu.Unlock()

	out := Stats{BufferBytes: srv.budget.used.Load(), BufferLimit: srv.budget.limit, ClientsClosed: srv.closedCounts()}
	live := map[*listener]*ListenerStats{}
	for _, l := range srv.listeners() {
		ls := ListenerStats{
			Name: l.name, Addr: l.ln.Addr().String(),
			CurrentSessions: l.cur.Load(), MaxSessions: l.peak.Load(), Limit: srv.maxClients(),
			TotalSessions: l.total.Load(), Refused: l.refused.Load(),
			Commands: l.commands.Load(), BytesIn: l.bytesIn.Load(), BytesOut: l.bytesOut.Load(), Errors: l.errs.Load(),
			Resent: l.resent.Load(), MovedToOwn: l.moved.Load(), Parked: l.parked.Load(),
			AuthFailures: l.authFailures.Load(),
			TLSFailed:    l.tlsFailed.Load(),
		}
		out.Listeners = append(out.Listeners, ls)
	}
	for i := range out.Listeners {
		live[srv.listeners()[i]] = &out.Listeners[i]
	}
	beCmds := map[string]int64{}
	for _, s := range sessions {
		if ls := live[s.l]; ls != nil {
			ls.Commands += s.commands.Load()
			ls.BytesIn += s.bytesIn.Load()
			ls.BytesOut += s.bytesOut.Load()
			ls.Errors += s.errs.Load()
		}
		if be := s.curBE.Load(); be != nil {
			beCmds[be.addr] += be.cmds.Load()
		}
	}
	shared := map[string]int64{}
	srv.mux.mu.Lock()
	for key, ms := range srv.mux.conns {
		shared[key.addr] += int64(len(ms))
	}
	srv.mux.mu.Unlock()
	for a, b := range backends {
		out.Backends = append(out.Backends, BackendStats{Addr: a, Sessions: b.sessions.Load(), Shared: shared[a], Commands: b.commands.Load() + beCmds[a], Errors: b.errors.Load()})
	}
	sort.Slice(out.Backends, func(i, j int) bool { return out.Backends[i].Addr < out.Backends[j].Addr })
	out.RefusedCommands = srv.refused.snapshot()
	return out
}
