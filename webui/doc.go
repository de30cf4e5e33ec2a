// Package webui serves redhaven's HTTP interface on every node: the stats
// page (server-rendered from embedded templates and CSS, in the spirit of
// HAProxy's stats page), the JSON and CSV stats API, Prometheus metrics,
// health endpoints for load balancers, and a few authenticated admin actions.
//
// webui knows nothing about the proxy, the cluster or the VIP: node fills a
// plain [Snapshot] through the one-method [Source] interface on every request
// (and on every Prometheus scrape, so the proxy's hot path only keeps its own
// counters), and performs admin actions through [Admin], committing them
// through Raft so that every node shows them.
//
// # Endpoints
//
//	GET  /                                 stats page; ?refresh=N (seconds, 0 = paused)
//	GET  /api/v1/stats                     JSON snapshot, "version": 1 (see Snapshot for fields)
//	GET  /stats;csv  (also /stats.csv)     CSV, one row per frontend/backend/sentinel/member
//	GET  /metrics                          Prometheus text exposition
//	GET  /health/live                      200 while the process serves HTTP
//	GET  /health/ready                     200 if the node routes clients of every service, else 503
//	GET  /health/ready?service=NAME        200 if it routes that service, 503 if not, 404 unknown service
//	GET  /health/leader                    200 on the Raft leader, else 503
//	POST /admin/backend                    form: service, addr, state (ready|drain|maintenance), csrf
//	POST /admin/failover                   form: service, csrf
//	POST /admin/transfer-leadership        form: node (empty = any), csrf
//	POST /api/v1/backends/{addr}/state     JSON {"state": "maintenance", "service": "mymaster"}
//	POST /api/v1/failover                  JSON {"service": "mymaster"} (body may be empty; the content type is required)
//	POST /api/v1/transfer-leadership       JSON {"node": "node2"}
//	POST /api/v1/join                      JSON {"addrs": ["10.0.0.12:7946"]}
//	POST /api/v1/leave                     JSON {}
//	POST /api/v1/members/remove            JSON {"node": "node3"}
//	POST /admin/route-reset                form: master, epoch (the route to clear), csrf
//	POST /api/v1/route/reset               JSON {"master": "10.0.0.9:6379", "epoch": 7} (both optional: unconditional)
//	POST /api/v1/keys                      JSON {"op": "install", "key": "..."}; op list|install|use|remove
//
// The backend and failover actions name a service ("service" in the JSON
// body or ?service= in the query, a form field on the page): it may be
// left out while the node routes one service; with several, leaving it out
// is a 400 that names them, and an unknown service is a 404.
//
// An action's JSON answer says which node carried it out ("node", and
// "forwarded": true when a follower forwarded it to the leader); a
// failover's also has the request's "id", which the service's
// "planned_failover" names in /api/v1/stats. Errors
// an Admin wraps with [Classify] get their status: 400 bad input, 404
// unknown, 409 not possible now, 503 no leader, 504 the leader did not
// answer in time; keys answer one row per node with fingerprints, never
// the keys.
//
// # JSON (GET /api/v1/stats)
//
// The [Stats] value: "version" (the API version, 1) and the [Snapshot]
// fields in snake_case. Fields may be added within version 1, never renamed.
// Durations are float seconds in fields named *_seconds; times are RFC 3339
// and left out when unknown. Abbreviated:
//
//	{
//	  "version": 1, "node": "node1", "redhaven_version": "0.3.0",
//	  "time": "2026-11-22T04:30:00Z", "started": "2026-11-21T02:18:00Z",
//	  "ready": true, "leader": true,
//	  "route": {"master": "10.0.0.11:6379", "epoch": 7, "reason": "promoted-slave", "since": "..."},
//	  "frontends": [{"name": "rw", "addr": ":6380", "current_sessions": 412, "max_sessions": 1310,
//	    "limit": 10000, "total_sessions": 182231, "sessions_per_sec": 12.5, "max_sessions_per_sec": 310,
//	    "commands_total": 98412377, "commands_per_sec": 18234.5,
//	    "bytes_in": 9812345678, "bytes_out": 23456789012, "errors": 17, "refused": 0, "auth_failures": 5}],
//	  "clients": {"buffer_bytes": 81920, "buffer_limit_bytes": 4294967296,
//	    "closed": {"auth_timeout": 9, "http": 2}},
//	  "backends": [{"addr": "10.0.0.11:6379", "role": "master", "state": "up", "is_master": true,
//	    "last_check": "...", "check_duration_seconds": 0.000412, "last_error": "", "last_change": "...",
//	    "downtime_seconds": 0, "offset": 1843211774, "lag_bytes": 0, "link_up": true, "sessions": 412,
//	    "commands": 98000123, "errors": 2, "admin": "ready"}],
//	  "sentinels": [{"addr": "10.0.0.11:26379", "reachable": true, "master": "10.0.0.11:6379", "epoch": 7,
//	    "last_event": "+switch-master", "last_event_time": "...", "last_error": ""}],
//	  "members": [{"name": "node2", "addr": "10.0.0.12:7946", "gossip_state": "alive", "raft_role": "follower",
//	    "raft_addr": "10.0.0.12:7947", "last_contact_seconds": 0.042, "version": "0.3.0",
//	    "http_addr": "10.0.0.12:8404", "is_leader": false}],
//	  "vip": {"mode": "netlink", "address": "10.0.0.100/24", "interface": "eth0", "holder": "node1", "held_here": true,
//	    "lease_remaining_seconds": 0.93, "lease_changes": {"grant": 1, "release": 0, "takeover": 2}},
//	  "events": [{"time": "...", "kind": "failover", "node": "node1",
//	    "message": "master 10.0.0.13:6379 -> 10.0.0.11:6379 (epoch 7)", "duration_seconds": 1.84}],
//	  "failovers": {"count": 2, "buckets": [0, 1, 1, 2, 2, 2, 2, 2, 2, 2], "sum_seconds": 2.26,
//	    "bucket_bounds_seconds": [0.25, 0.5, 1, 2, 3, 5, 10, 20, 30, 60]},
//	  "process": {"pid": 812, "rss_bytes": 31457280, "open_fds": 431, "max_fds": 65536, "cpu_seconds": 912.4,
//	    "goroutines": 57, "gomaxprocs": 1, "go_version": "go1.26.8"},
//	  "services": [{"name": "mymaster", "ready": true, "route": {...}, "frontends": [...], "backends": [...],
//	    "sentinels": [...], "failovers": {...},
//	    "summary": {"state": "ready", "current_sessions": 412, "total_sessions": 182231, "sessions_per_sec": 12.5,
//	      "commands_total": 98412377, "commands_per_sec": 18234.5, "bytes_in": 9812345678, "bytes_out": 23456789012,
//	      "errors": 17, "refused": 0, "backends_up": 2, "backends": 3, "failovers": 2}}]
//	}
//
// "services" is the full picture: one entry per service (a Sentinel
// master name with its listeners and Redis nodes), in configuration order,
// with the same route, frontend, backend, sentinel and failover fields as
// the top level and a summary. The top-level "route", "frontends",
// "backends", "sentinels" and "failovers" are the first service's, and
// "ready" is true when every service is ready, so clients written for one
// service keep working; read "services" to see every one. Events about a
// service name it ("service"). A service with its own VIP has it in its
// entry ("vip", the same fields as the top level's plus "service"); the
// top-level "vip" is the VIP the other services share. A service that
// has had a planned failover has the latest request in its entry:
// "planned_failover": {"id": 812, "status": "completed", "result":
// "failed: no replica in sync with the master", "requested": "...",
// "completed": "..."}; "status" is "pending" while it runs, and "result"
// is "ok: ..." or "failed: <why>" (the leader aborted it and, unless
// <why> says restoring failed, put the old route back).
//
// The page's /?hide=down leaves DOWN backends out of the table (the summary
// row still counts them).
//
// Actions answer {"ok": true, "message": "..."} or {"ok": false, "error": "..."}
// with 400 (bad input), 401, 403, 404 (unknown backend or node), 415, 429
// (too many wrong passwords), 503 (busy checking passwords) or 500 (the
// action failed, e.g. this node could not commit it).
//
// # CSV (GET /stats;csv)
//
// A header row ([CSVHeader]) then one row per object, the "type" column
// saying which: route (one row: committed master, epoch, this node's
// readiness), frontend, backend, sentinel, member. Columns that do not apply
// to a type are empty; HAProxy's short names are kept where they exist
// (scur, smax, slim, stot, bin, bout). Route, frontend, backend and
// sentinel rows come once per service, which the last column, "service",
// names (one route row per service). New columns are only ever appended.
//
// # Metrics (GET /metrics)
//
// Read from the Snapshot at scrape time. Every metric about one service
// has a "service" label (its Sentinel master name) besides the labels
// listed below: the proxy metrics by {listener}, the backend, sentinel
// and route metrics, and the failover histogram. redhaven_service_master_info {service, master_name,
// master_address} is 1 for each service's committed master, with
// redis_exporter's label names so that its metrics join on them;
// redhaven_service_ready {service} is /health/ready?service=NAME.
// redhaven_proxy_sessions_current,
// _sessions_max, _sessions_limit, _sessions_total, _commands_total,
// _bytes_in_total, _bytes_out_total, _errors_total, _refused_total,
// _auth_failures_total, _tls_handshake_failures_total {listener}; redhaven_proxy_buffer_bytes,
// _buffer_limit_bytes (proxy.max_buffer_memory), _clients_closed_total
// {reason} (Snapshot.Clients); redhaven_proxy_commands_refused_total
// {command} (Snapshot.RefusedCommands); redhaven_backend_up, _is_master, _replication_lag_bytes,
// _replication_offset, _link_up, _sessions_current, _commands_total,
// _errors_total, _check_duration_seconds, _downtime_seconds_total {addr};
// redhaven_sentinel_reachable, _config_epoch {addr}; redhaven_route_epoch,
// redhaven_route_has_master, redhaven_route_contradicted (this node's
// watcher contradicts the committed master, which then gets no traffic
// here), redhaven_route_epoch_ahead (the committed epoch is above every
// Sentinel's) {service}; redhaven_node_ready (every service),
// redhaven_cluster_is_leader,
// redhaven_cluster_members {state}; per VIP, with service "" for the
// shared VIP and the service's name for a service's own (Service.VIP):
// redhaven_vip_held {service},
// redhaven_vip_lease_holder {service, node}, redhaven_vip_lease_remaining_seconds {service},
// redhaven_vip_lease_changes_total {service, kind: grant, takeover, release};
// redhaven_build_info {version}; the redhaven_failover_duration_seconds
// histogram {service} (from Service.Failovers, or the failover events of
// the service when node keeps none); redhaven_http_auth_refused_total {reason: wrong, limited, busy}
// and redhaven_http_auth_bcrypt_total (comparisons run), counted by the
// server itself; and the Go and process collectors.
//
// # Authentication
//
// Two ways in. The admin socket (Config.AdminSocket, default
// /run/redhaven/admin.sock) serves the same endpoints over a Unix socket of
// mode 0660 owned by the agent's user and group: whoever the kernel lets
// connect (root, the group's members) is an admin, with no password; the
// `redhaven` CLI uses it. The agent does not check SO_PEERCRED on top: the
// file's permissions are the one rule.
//
// Over TCP, without http.auth users the interface is read-only and open:
// the page shows no forms and every action answers 403, from loopback too.
// With http.auth every endpoint except /health/* (which load balancers
// probe) needs HTTP basic credentials of a configured user; both roles
// ("read" and "admin") may read, only "admin" may act. A request without
// valid credentials gets 401 with a WWW-Authenticate challenge; a "read"
// user gets 403 on actions. Passwords are stored as bcrypt hashes
// ([HashPassword], `redhaven passwd`).
//
// bcrypt is slow by design, so the network must not be able to make the
// agent run it at will: a verified (user, password) is cached for 5
// minutes, keyed by an HMAC-SHA256 under a random per-process key (the
// password is never kept); every other attempt takes a token from its
// client address's bucket (5, then one per 10 s; IPv6 by /64) and from a
// global one (10, then one per 10 s), given back when the password was right,
// and gets 429 without bcrypt when either is empty (after a 1 s wait, for
// up to 256 such requests at once, which slows a flood over kept-alive
// connections to a few attempts a second). A refused (user, password,
// hash) is cached as well, for 5 minutes under its own HMAC: the same
// wrong password again, from any address, gets 401 at the cost of the
// address's token only, without bcrypt (a client that tries a new
// password each time gains nothing from it and stays bounded by the
// buckets); a reload of http.auth clears both caches. One bcrypt runs at a
// time, at most 4 requests wait for it (2 s at most), the others get 503.
// Every 401, 429 and 503 closes its connection, and a new connection from
// an address with no token left (and no login from it in the last 5
// minutes) is answered with a fixed 429 at accept, after 5 s for up to
// 1,024 at once, without net/http reading a request: a flood over many
// connections and addresses then costs the agent four system calls per
// attempt (accept4, read, write, close on a bare descriptor: such a
// connection is never made a net.Conn), not the parsing of a request.
// Connections of addresses no user logged in from are handed to net/http
// at most 400 a second (bursts of 20): on one P the runtime polls the
// network only when no goroutine is ready, so hundreds of requests at once
// would keep the proxy's ready sockets waiting. Refusals held at accept,
// and 429s delayed in the handler, wait their delay plus up to a quarter
// more at random, so that a synchronized flood spreads out. The comparison
// itself runs on an OS thread of its own at nice 10 (the proxy's and
// Redis's threads preempt it on wake-up) with GOMAXPROCS raised by one
// while it runs, so that the proxy keeps its P; where the priority cannot
// be lowered, it pauses every few key-schedule rounds.
//
// # Host and Origin
//
// An action over TCP (a form or a JSON POST) is refused with 403 before
// its credentials are checked when its Host, or its Origin when present,
// does not name this agent: the listen address; localhost, *.localhost or
// a loopback address with the listen port; the node's interface addresses
// or host name with the listen port; or an entry of http.allowed_hosts
// ("name" for any port, "name:port" for one). This stops DNS rebinding and
// forms posted from other sites. Reads are not checked (Prometheus and
// load balancers use whatever name they like).
//
// # CSRF
//
// The HTML forms carry a token, the HMAC-SHA256 of the user name under a
// random per-process secret; a form POST without the right token gets 403
// (after a restart the page must be reloaded). The JSON API under /api/v1/
// needs no token, but it only accepts "Content-Type: application/json": a
// browser cannot send that content type cross-origin without a CORS preflight,
// which this server never approves, so another site cannot make a logged-in
// browser call it. Any other content type gets 415.
package webui
