package webui

import (
	"github.com/prometheus/client_golang/prometheus"
)

// collector turns a Snapshot into Prometheus metrics at scrape time, so the
// proxy keeps only its own atomic counters and pays nothing per command.
type collector struct {
	src Source

	sessionsCur, sessionsMax, sessionsLimit, sessionsTotal, sessionsIdle, movedToOwn  *prometheus.Desc
	commands, bytesIn, bytesOut, errors, refused                                      *prometheus.Desc
	authFailures, tlsFailed, bufferBytes, bufferLimit, clientsClosed, commandsRefused *prometheus.Desc

	backendUp, backendMaster, backendLag, backendOffset, backendLink *prometheus.Desc
	backendSessions, backendCommands, backendErrors                  *prometheus.Desc
	backendCheck, backendDowntime                                    *prometheus.Desc

	sentinelReachable, sentinelEpoch *prometheus.Desc

	rejected *prometheus.Desc

	routeEpoch, routeHasMaster, routeContradicted, routeEpochAhead, ready, leader, members, vipHeld, failover, build *prometheus.Desc

	leaseHolder, leaseRemaining, leaseChanges *prometheus.Desc
}

func newCollector(src Source) *collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("redhaven_"+name, help, labels, nil)
	}
	return &collector{
		src:             src,
		sessionsCur:     d("proxy_sessions_current", "Client sessions open now.", "listener"),
		sessionsMax:     d("proxy_sessions_max", "Highest number of client sessions open at once.", "listener"),
		sessionsLimit:   d("proxy_sessions_limit", "Configured client session limit (0: none).", "listener"),
		sessionsTotal:   d("proxy_sessions_total", "Client sessions accepted.", "listener"),
		sessionsIdle:    d("proxy_sessions_idle", "Idle client sessions parked now (no goroutine until the client sends).", "listener"),
		movedToOwn:      d("proxy_sessions_moved_to_own_total", "Sessions that left a shared backend connection for their own (proxy.multiplex).", "listener"),
		commands:        d("proxy_commands_total", "Commands forwarded.", "listener"),
		bytesIn:         d("proxy_bytes_in_total", "Bytes received from clients.", "listener"),
		bytesOut:        d("proxy_bytes_out_total", "Bytes sent to clients.", "listener"),
		errors:          d("proxy_errors_total", "Errors returned to clients by the proxy.", "listener"),
		refused:         d("proxy_refused_total", "Client connections refused.", "listener"),
		commandsRefused: d("proxy_commands_refused_total", "Commands the proxy refused (proxy.deny_commands, or never allowed), by command.", "command"),
		authFailures:    d("proxy_auth_failures_total", "Wrong proxy passwords (proxy.password).", "listener"),
		tlsFailed:       d("proxy_tls_handshake_failures_total", "Client TLS handshakes that failed (proxy.tls): wrong or missing client certificate, plain TCP, timeout.", "listener"),
		bufferBytes:     d("proxy_buffer_bytes", "Memory held by clients' buffered input and unread replies."),
		bufferLimit:     d("proxy_buffer_limit_bytes", "proxy.max_buffer_memory: beyond it the largest consumers are disconnected."),
		clientsClosed:   d("proxy_clients_closed_total", "Clients the proxy closed or refused, by reason.", "reason"),

		backendUp:       d("backend_up", "1 if the Redis node is up (up, going down, drain), else 0.", "addr"),
		backendMaster:   d("backend_is_master", "1 for the committed master.", "addr"),
		backendLag:      d("backend_replication_lag_bytes", "Replication lag behind the master, in bytes.", "addr"),
		backendOffset:   d("backend_replication_offset", "Replication offset.", "addr"),
		backendLink:     d("backend_link_up", "1 if the replica's link to its master is up.", "addr"),
		backendSessions: d("backend_sessions_current", "Proxied sessions connected to this node now.", "addr"),
		backendCommands: d("backend_commands_total", "Commands sent to this node.", "addr"),
		backendErrors:   d("backend_errors_total", "Errors talking to this node.", "addr"),
		backendCheck:    d("backend_check_duration_seconds", "Duration of the last health check.", "addr"),
		backendDowntime: d("backend_downtime_seconds_total", "Total time this node was down.", "addr"),

		sentinelReachable: d("sentinel_reachable", "1 if the Sentinel answers.", "addr"),
		sentinelEpoch:     d("sentinel_config_epoch", "Config epoch the Sentinel reports.", "addr"),

		rejected: d("cluster_rejected_connections_total", "Refused cluster connections: Raft TLS handshakes refused (transport raft) and gossip packets not encrypted with an installed key (transport gossip), by reason.", "transport", "reason"),

		routeEpoch:        d("route_epoch", "Epoch of the committed route decision."),
		routeHasMaster:    d("route_has_master", "1 if the committed route names a master."),
		routeContradicted: d("route_contradicted", "1 if this node's own observation contradicts the committed master (not a known Redis node, or a replica); it then routes no writes."),
		routeEpochAhead:   d("route_epoch_ahead", "1 if the committed epoch is above every epoch the Sentinels report."),
		ready:             d("node_ready", "1 if this node routes clients (/health/ready)."),
		leader:            d("cluster_is_leader", "1 if this node is the Raft leader."),
		members:           d("cluster_members", "Cluster members by gossip state.", "state"),
		vipHeld:           d("vip_held", "1 if this node holds the virtual IP."),
		leaseHolder:       d("vip_lease_holder", "1 for the node holding the VIP lease, as this node sees it (no series while the lease is free).", "node"),
		leaseRemaining:    d("vip_lease_remaining_seconds", "How long the VIP lease lasts as this node sees it: on the holder until its own lease ends, elsewhere until this node may take it over; 0 when free."),
		leaseChanges:      d("vip_lease_changes_total", "VIP lease changes this node applied since it started, by kind (grant, takeover after expiry, release).", "kind"),
		failover:          d("failover_duration_seconds", "Duration of failovers, from master lost to new master routed."),
		build:             d("build_info", "Always 1; the version label names the redhaven version.", "version"),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		c.sessionsCur, c.sessionsMax, c.sessionsLimit, c.sessionsTotal, c.sessionsIdle, c.movedToOwn, c.commands, c.bytesIn, c.bytesOut, c.errors, c.refused,
		c.authFailures, c.tlsFailed, c.bufferBytes, c.bufferLimit, c.clientsClosed, c.commandsRefused,
		c.backendUp, c.backendMaster, c.backendLag, c.backendOffset, c.backendLink, c.backendSessions, c.backendCommands,
		c.backendErrors, c.backendCheck, c.backendDowntime, c.sentinelReachable, c.sentinelEpoch, c.rejected,
		c.routeEpoch, c.routeHasMaster, c.routeContradicted, c.routeEpochAhead, c.ready, c.leader, c.members, c.vipHeld, c.failover, c.build,
		c.leaseHolder, c.leaseRemaining, c.leaseChanges,
	} {
		ch <- d
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func backendIsUp(state string) bool {
	return state == StateUp || state == StateGoingDown || state == StateDrain
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	snap := c.src.Snapshot()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	seen := map[string]bool{} // a repeated label value would fail the scrape
	for _, f := range snap.Frontends {
		l := f.Name
		if l == "" {
			l = f.Addr
		}
		if seen[l] {
			continue
		}
		seen[l] = true
		gauge(c.sessionsCur, float64(f.CurrentSessions), l)
		gauge(c.sessionsMax, float64(f.MaxSessions), l)
		gauge(c.sessionsLimit, float64(f.Limit), l)
		counter(c.sessionsTotal, float64(f.TotalSessions), l)
		gauge(c.sessionsIdle, float64(f.IdleSessions), l)
		counter(c.movedToOwn, float64(f.MovedToOwn), l)
		counter(c.commands, float64(f.CommandsTotal), l)
		counter(c.bytesIn, float64(f.BytesIn), l)
		counter(c.bytesOut, float64(f.BytesOut), l)
		counter(c.errors, float64(f.Errors), l)
		counter(c.refused, float64(f.Refused), l)
		counter(c.authFailures, float64(f.AuthFailures), l)
		counter(c.tlsFailed, float64(f.TLSFailed), l)
	}
	gauge(c.bufferBytes, float64(snap.Clients.BufferBytes))
	gauge(c.bufferLimit, float64(snap.Clients.BufferLimit))
	for reason, n := range snap.Clients.Closed {
		counter(c.clientsClosed, float64(n), reason)
	}
	for cmd, n := range snap.RefusedCommands {
		counter(c.commandsRefused, float64(n), cmd)
	}
	clear(seen)
	for _, b := range snap.Backends {
		if seen[b.Addr] {
			continue
		}
		seen[b.Addr] = true
		gauge(c.backendUp, b2f(backendIsUp(b.State)), b.Addr)
		gauge(c.backendMaster, b2f(b.IsMaster), b.Addr)
		gauge(c.backendLag, float64(b.LagBytes), b.Addr)
		gauge(c.backendOffset, float64(b.Offset), b.Addr)
		gauge(c.backendLink, b2f(b.LinkUp), b.Addr)
		gauge(c.backendSessions, float64(b.Sessions), b.Addr)
		counter(c.backendCommands, float64(b.Commands), b.Addr)
		counter(c.backendErrors, float64(b.Errors), b.Addr)
		gauge(c.backendCheck, seconds(b.CheckDuration), b.Addr)
		counter(c.backendDowntime, seconds(b.Downtime), b.Addr)
	}
	clear(seen)
	for _, s := range snap.Sentinels {
		if seen[s.Addr] {
			continue
		}
		seen[s.Addr] = true
		gauge(c.sentinelReachable, b2f(s.Reachable), s.Addr)
		gauge(c.sentinelEpoch, float64(s.Epoch), s.Addr)
	}
	clear(seen)
	for _, r := range snap.Rejected {
		if k := r.Transport + "/" + r.Reason; !seen[k] {
			seen[k] = true
			counter(c.rejected, float64(r.Count), r.Transport, r.Reason)
		}
	}
	states := map[string]float64{"alive": 0, "suspect": 0, "dead": 0, "left": 0}
	for _, m := range snap.Members {
		states[m.GossipState]++
	}
	for st, n := range states {
		if st != "" {
			gauge(c.members, n, st)
		}
	}
	gauge(c.routeEpoch, float64(snap.Route.Epoch))
	gauge(c.routeHasMaster, b2f(snap.Route.Master != ""))
	gauge(c.routeContradicted, b2f(snap.Route.Contradicted != ""))
	gauge(c.routeEpochAhead, b2f(snap.Route.EpochAhead))
	gauge(c.ready, b2f(snap.Ready))
	gauge(c.leader, b2f(snap.Leader))
	gauge(c.vipHeld, b2f(snap.VIP.HeldHere))
	if snap.VIP.Holder != "" {
		gauge(c.leaseHolder, 1, snap.VIP.Holder)
	}
	gauge(c.leaseRemaining, snap.VIP.LeaseRemaining)
	for kind, n := range snap.VIP.LeaseChanges {
		counter(c.leaseChanges, float64(n), kind)
	}
	gauge(c.build, 1, snap.Version)
	count, sum, buckets := snap.failoverHistogram()
	ch <- prometheus.MustNewConstHistogram(c.failover, count, sum, buckets)
}
