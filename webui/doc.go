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
//	GET  /health/ready                     200 if the node routes clients, else 503
//	GET  /health/leader                    200 on the Raft leader, else 503
//	POST /admin/backend                    form: addr, state (ready|drain|maintenance), csrf
//	POST /admin/failover                   form: csrf
//	POST /admin/transfer-leadership        form: node (empty = any), csrf
//	POST /api/v1/backends/{addr}/state     JSON {"state": "maintenance"}
//	POST /api/v1/failover                  JSON {} (body may be empty; the content type is required)
//	POST /api/v1/transfer-leadership       JSON {"node": "node2"}
//
// # Authentication
//
// Without http.auth the interface is read-only and open: the page shows no
// forms and every POST answers 403. With http.auth every endpoint except
// /health/* (which load balancers probe) needs HTTP basic credentials of a
// configured user; both roles ("read" and "admin") may read, only "admin"
// may act. A request without valid credentials gets 401 with a
// WWW-Authenticate challenge; a "read" user gets 403 on actions. Passwords
// are stored as bcrypt hashes ([HashPassword], `redhaven` CLI).
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
