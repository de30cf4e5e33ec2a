package webui

import (
	"encoding/csv"
	"encoding/json"
	"net/http"
	"strconv"
	"time"
)

// APIVersion is the "version" of /api/v1/stats.
const APIVersion = 1

// Stats is the body of GET /api/v1/stats: the snapshot with the API version.
type Stats struct {
	Version int `json:"version"` // APIVersion
	Snapshot
}

func (s *Server) handleStatsJSON(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, Stats{Version: APIVersion, Snapshot: s.snapshot()})
}

func health(w http.ResponseWriter, ok bool, what string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	code, status := http.StatusOK, "ok"
	if !ok {
		code, status = http.StatusServiceUnavailable, "not "+what
	}
	w.WriteHeader(code)
	_, _ = w.Write([]byte(`{"status":"` + status + `"}` + "\n"))
}

func (s *Server) handleLive(w http.ResponseWriter, r *http.Request) { health(w, true, "live") }

// handleReady: without ?service=, ready when this node routes every
// service; with it, that service only (404 for a service not configured
// here, so that a load balancer's typo does not look like a node down).
func (s *Server) handleReady(w http.ResponseWriter, r *http.Request) {
	snap := s.snapshot()
	if !r.URL.Query().Has("service") {
		health(w, snap.Ready, "ready")
		return
	}
	sv, err := snap.Service(r.URL.Query().Get("service"))
	if err != nil {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(statusOf(err))
		_ = json.NewEncoder(w).Encode(map[string]string{"status": "unknown service", "error": err.Error()})
		return
	}
	health(w, sv.Ready, "ready")
}

func (s *Server) handleLeader(w http.ResponseWriter, r *http.Request) {
	health(w, s.src.Snapshot().Leader, "leader")
}

// CSVHeader is the header row of GET /stats;csv. Each row has a type
// (route, frontend, backend, sentinel, member); columns that do not apply to
// a type are empty. Times are RFC 3339, durations float seconds. Route,
// frontend, backend and sentinel rows come per service, named in the
// "service" column (empty on member rows); new columns are added at the
// end.
var CSVHeader = []string{
	"type", "name", "addr", "status", "role", "is_master", "admin",
	"scur", "smax", "slim", "stot", "cmd_tot", "cmd_rate", "bin", "bout", "errors", "refused",
	"last_check", "check_duration_seconds", "last_change", "downtime_seconds",
	"offset", "lag_bytes", "link_up",
	"master", "epoch", "last_event", "last_event_time",
	"raft_role", "raft_addr", "last_contact_seconds", "version", "is_leader", "last_error",
	"service",
}

func (s *Server) handleStatsCSV(w http.ResponseWriter, r *http.Request) {
	snap := s.snapshot()
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	cw := csv.NewWriter(w)
	_ = cw.Write(CSVHeader)
	for _, row := range csvRows(snap) {
		_ = cw.Write(row)
	}
	cw.Flush()
}

func csvRows(snap Snapshot) [][]string {
	col := make(map[string]int, len(CSVHeader))
	for i, h := range CSVHeader {
		col[h] = i
	}
	var rows [][]string
	add := func(kv map[string]string) {
		row := make([]string, len(CSVHeader))
		for k, v := range kv {
			row[col[k]] = v
		}
		rows = append(rows, row)
	}
	i64 := func(v int64) string { return strconv.FormatInt(v, 10) }
	u64 := func(v uint64) string { return strconv.FormatUint(v, 10) }
	secs := func(d time.Duration) string { return strconv.FormatFloat(seconds(d), 'f', -1, 64) }
	tm := func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format(time.RFC3339Nano)
	}
	status := func(ok bool, yes, no string) string {
		if ok {
			return yes
		}
		return no
	}
	for _, sv := range snap.Services {
		add(map[string]string{
			"type": "route", "name": snap.Node, "addr": sv.Route.Master, "master": sv.Route.Master,
			"epoch": i64(sv.Route.Epoch), "last_event": sv.Route.Reason, "last_change": tm(sv.Route.Since),
			"status": status(sv.Ready, "ready", "not ready"), "is_leader": strconv.FormatBool(snap.Leader),
			"version": snap.Version, "service": sv.Name,
		})
		for _, f := range sv.Frontends {
			add(map[string]string{
				"type": "frontend", "name": f.Name, "addr": f.Addr, "status": "open",
				"scur": i64(f.CurrentSessions), "smax": i64(f.MaxSessions), "slim": i64(f.Limit),
				"stot": u64(f.TotalSessions), "cmd_tot": u64(f.CommandsTotal),
				"bin": u64(f.BytesIn), "bout": u64(f.BytesOut), "errors": u64(f.Errors), "refused": u64(f.Refused),
				"cmd_rate": strconv.FormatFloat(f.CommandsPerSec, 'f', -1, 64), "service": sv.Name,
			})
		}
		for _, b := range sv.Backends {
			add(map[string]string{
				"type": "backend", "name": b.Addr, "addr": b.Addr, "status": b.State, "role": b.Role,
				"is_master": strconv.FormatBool(b.IsMaster), "admin": b.Admin,
				"scur": i64(b.Sessions), "cmd_tot": u64(b.Commands), "errors": u64(b.Errors),
				"last_check": tm(b.LastCheck), "check_duration_seconds": secs(b.CheckDuration),
				"last_change": tm(b.LastChange), "downtime_seconds": secs(b.Downtime),
				"offset": i64(b.Offset), "lag_bytes": i64(b.LagBytes), "link_up": strconv.FormatBool(b.LinkUp),
				"last_error": b.LastError, "service": sv.Name,
			})
		}
		for _, sn := range sv.Sentinels {
			add(map[string]string{
				"type": "sentinel", "name": sn.Addr, "addr": sn.Addr, "status": status(sn.Reachable, "up", "down"),
				"master": sn.Master, "epoch": i64(sn.Epoch), "last_event": sn.LastEvent,
				"last_event_time": tm(sn.LastEventTime), "last_error": sn.LastError, "service": sv.Name,
			})
		}
	}
	for _, m := range snap.Members {
		add(map[string]string{
			"type": "member", "name": m.Name, "addr": m.Addr, "status": m.GossipState,
			"raft_role": m.RaftRole, "raft_addr": m.RaftAddr, "last_contact_seconds": secs(m.LastContact),
			"version": m.Version, "is_leader": strconv.FormatBool(m.IsLeader),
		})
	}
	return rows
}
