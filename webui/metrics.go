package webui

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// collector turns a Snapshot into Prometheus metrics at scrape time, so the
// proxy keeps only its own atomic counters and pays nothing per command.
type collector struct {
	snapshot func() Snapshot // normalized

	sessionsCur, sessionsMax, sessionsLimit, sessionsTotal, sessionsIdle, movedToOwn  *prometheus.Desc
	commands, bytesIn, bytesOut, errors, refused                                      *prometheus.Desc
	authFailures, tlsFailed, bufferBytes, bufferLimit, clientsClosed, commandsRefused *prometheus.Desc

	backendUp, backendMaster, backendLag, backendOffset, backendLink *prometheus.Desc
	backendSessions, backendCommands, backendErrors                  *prometheus.Desc
	backendCheck, backendDowntime                                    *prometheus.Desc

	sentinelReachable, sentinelEpoch *prometheus.Desc

	rejected *prometheus.Desc

	routeEpoch, routeHasMaster, routeContradicted, routeEpochAhead, ready, leader, members, vipHeld, failover, build *prometheus.Desc

	serviceReady, serviceMaster *prometheus.Desc

	leaseHolder, leaseRemaining, leaseChanges *prometheus.Desc
}

// Every metric that is about one service has a "service" label (the
// service's name, Sentinel's master name); redhaven_service_master_info
// also carries redis_exporter's label names for the same ideas
// (master_name, master_address) so that dashboards can join the two.
func newCollector(snapshot func() Snapshot) *collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("redhaven_"+name, help, labels, nil)
	}
	return &collector{
		snapshot:        snapshot,
		sessionsCur:     d("proxy_sessions_current", "Client sessions open now.", "service", "listener"),
		sessionsMax:     d("proxy_sessions_max", "Highest number of client sessions open at once.", "service", "listener"),
		sessionsLimit:   d("proxy_sessions_limit", "Configured client session limit (0: none).", "service", "listener"),
		sessionsTotal:   d("proxy_sessions_total", "Client sessions accepted.", "service", "listener"),
		sessionsIdle:    d("proxy_sessions_idle", "Idle client sessions parked now (no goroutine until the client sends).", "service", "listener"),
		movedToOwn:      d("proxy_sessions_moved_to_own_total", "Sessions that left a shared backend connection for their own (proxy.multiplex).", "service", "listener"),
		commands:        d("proxy_commands_total", "Commands forwarded.", "service", "listener"),
		bytesIn:         d("proxy_bytes_in_total", "Bytes received from clients.", "service", "listener"),
		bytesOut:        d("proxy_bytes_out_total", "Bytes sent to clients.", "service", "listener"),
		errors:          d("proxy_errors_total", "Errors returned to clients by the proxy.", "service", "listener"),
		refused:         d("proxy_refused_total", "Client connections refused.", "service", "listener"),
		commandsRefused: d("proxy_commands_refused_total", "Commands the proxy refused (proxy.deny_commands, or never allowed), by command.", "command"),
		authFailures:    d("proxy_auth_failures_total", "Wrong proxy passwords (proxy.password).", "service", "listener"),
		tlsFailed:       d("proxy_tls_handshake_failures_total", "Client TLS handshakes that failed (proxy.tls): wrong or missing client certificate, plain TCP, timeout.", "service", "listener"),
		bufferBytes:     d("proxy_buffer_bytes", "Memory held by clients' buffered input and unread replies."),
		bufferLimit:     d("proxy_buffer_limit_bytes", "proxy.max_buffer_memory: beyond it the largest consumers are disconnected."),
		clientsClosed:   d("proxy_clients_closed_total", "Clients the proxy closed or refused, by reason.", "reason"),

		backendUp:       d("backend_up", "1 if the Redis node is up (up, going down, drain), else 0.", "service", "addr"),
		backendMaster:   d("backend_is_master", "1 for the committed master.", "service", "addr"),
		backendLag:      d("backend_replication_lag_bytes", "Replication lag behind the master, in bytes.", "service", "addr"),
		backendOffset:   d("backend_replication_offset", "Replication offset.", "service", "addr"),
		backendLink:     d("backend_link_up", "1 if the replica's link to its master is up.", "service", "addr"),
		backendSessions: d("backend_sessions_current", "Proxied sessions connected to this node now.", "service", "addr"),
		backendCommands: d("backend_commands_total", "Commands sent to this node.", "service", "addr"),
		backendErrors:   d("backend_errors_total", "Errors talking to this node.", "service", "addr"),
		backendCheck:    d("backend_check_duration_seconds", "Duration of the last health check.", "service", "addr"),
		backendDowntime: d("backend_downtime_seconds_total", "Total time this node was down.", "service", "addr"),

		sentinelReachable: d("sentinel_reachable", "1 if the Sentinel answers.", "service", "addr"),
		sentinelEpoch:     d("sentinel_config_epoch", "Config epoch the Sentinel reports.", "service", "addr"),

		rejected: d("cluster_rejected_connections_total", "Refused cluster connections: Raft TLS handshakes refused (transport raft) and gossip packets not encrypted with an installed key (transport gossip), by reason.", "transport", "reason"),

		routeEpoch:        d("route_epoch", "Epoch of the committed route decision.", "service"),
		routeHasMaster:    d("route_has_master", "1 if the committed route names a master.", "service"),
		routeContradicted: d("route_contradicted", "1 if this node's own observation contradicts the committed master (not a known Redis node, or a replica); it then routes no writes.", "service"),
		routeEpochAhead:   d("route_epoch_ahead", "1 if the committed epoch is above every epoch the Sentinels report.", "service"),
		ready:             d("node_ready", "1 if this node routes clients (/health/ready)."),
		leader:            d("cluster_is_leader", "1 if this node is the Raft leader."),
		members:           d("cluster_members", "Cluster members by gossip state.", "state"),
		vipHeld:           d("vip_held", "1 if this node holds the virtual IP; service names a service's own VIP, empty for the shared one.", "service"),
		leaseHolder:       d("vip_lease_holder", "1 for the node holding the VIP lease, as this node sees it (no series while the lease is free); service names a service's own VIP, empty for the shared one.", "service", "node"),
		leaseRemaining:    d("vip_lease_remaining_seconds", "How long the VIP lease lasts as this node sees it: on the holder until its own lease ends, elsewhere until this node may take it over; 0 when free. service names a service's own VIP, empty for the shared one.", "service"),
		leaseChanges:      d("vip_lease_changes_total", "VIP lease changes this node applied since it started, by kind (grant, takeover after expiry, release); service names a service's own VIP, empty for the shared one.", "service", "kind"),
		failover:          d("failover_duration_seconds", "Duration of failovers, from master lost to new master routed.", "service"),
		build:             d("build_info", "Always 1; the version label names the redhaven version.", "version"),
		serviceReady:      d("service_ready", "1 if this node routes the service's clients (/health/ready?service=NAME).", "service"),
		serviceMaster:     d("service_master_info", "Always 1, for the committed master of the service: master_name is Sentinel's name of the master, master_address its host:port, as redis_exporter's labels (no series while none is committed).", "service", "master_name", "master_address"),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		c.sessionsCur, c.sessionsMax, c.sessionsLimit, c.sessionsTotal, c.sessionsIdle, c.movedToOwn, c.commands, c.bytesIn, c.bytesOut, c.errors, c.refused,
		c.authFailures, c.tlsFailed, c.bufferBytes, c.bufferLimit, c.clientsClosed, c.commandsRefused,
		c.backendUp, c.backendMaster, c.backendLag, c.backendOffset, c.backendLink, c.backendSessions, c.backendCommands,
		c.backendErrors, c.backendCheck, c.backendDowntime, c.sentinelReachable, c.sentinelEpoch, c.rejected,
		c.routeEpoch, c.routeHasMaster, c.routeContradicted, c.routeEpochAhead, c.ready, c.leader, c.members, c.vipHeld, c.failover, c.build,
		c.leaseHolder, c.leaseRemaining, c.leaseChanges, c.serviceReady, c.serviceMaster,
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
	snap := c.snapshot()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	seen := map[string]bool{} // a repeated label value would fail the scrape
	once := func(kind string, labels ...string) bool {
		k := kind + "\x00" + strings.Join(labels, "\x00")
		if seen[k] {
			return false
		}
		seen[k] = true
		return true
	}
	for i := range snap.Services {
		sv := &snap.Services[i]
		svc := sv.Name
		if !once("service", svc) {
			continue
		}
		c.collectService(sv, gauge, counter, once)
		count, sum, buckets := snap.failoverHistogram(sv)
		ch <- prometheus.MustNewConstHistogram(c.failover, count, sum, buckets, svc)
	}
	gauge(c.bufferBytes, float64(snap.Clients.BufferBytes))
	gauge(c.bufferLimit, float64(snap.Clients.BufferLimit))
	for reason, n := range snap.Clients.Closed {
		counter(c.clientsClosed, float64(n), reason)
	}
	for cmd, n := range snap.RefusedCommands {
		counter(c.commandsRefused, float64(n), cmd)
	}
	for _, r := range snap.Rejected {
		if once("rejected", r.Transport, r.Reason) {
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
	gauge(c.ready, b2f(snap.Ready))
	gauge(c.leader, b2f(snap.Leader))
	vips := []VIP{snap.VIP}
	for _, sv := range snap.Services {
		if sv.VIP != nil {
			vips = append(vips, *sv.VIP)
		}
	}
	for _, v := range vips {
		gauge(c.vipHeld, b2f(v.HeldHere), v.Service)
		if v.Holder != "" {
			gauge(c.leaseHolder, 1, v.Service, v.Holder)
		}
		gauge(c.leaseRemaining, v.LeaseRemaining, v.Service)
		for kind, n := range v.LeaseChanges {
			counter(c.leaseChanges, float64(n), v.Service, kind)
		}
	}
	gauge(c.build, 1, snap.Version)
}

type emit func(d *prometheus.Desc, v float64, labels ...string)

// collectService emits the metrics of one service, each with its
// "service" label.
func (c *collector) collectService(sv *Service, gauge, counter emit, once func(kind string, labels ...string) bool) {
	svc := sv.Name
	for _, f := range sv.Frontends {
		l := f.Name
		if l == "" {
			l = f.Addr
		}
		if !once("listener", svc, l) {
			continue
		}
		gauge(c.sessionsCur, float64(f.CurrentSessions), svc, l)
		gauge(c.sessionsMax, float64(f.MaxSessions), svc, l)
		gauge(c.sessionsLimit, float64(f.Limit), svc, l)
		counter(c.sessionsTotal, float64(f.TotalSessions), svc, l)
		gauge(c.sessionsIdle, float64(f.IdleSessions), svc, l)
		counter(c.movedToOwn, float64(f.MovedToOwn), svc, l)
		counter(c.commands, float64(f.CommandsTotal), svc, l)
		counter(c.bytesIn, float64(f.BytesIn), svc, l)
		counter(c.bytesOut, float64(f.BytesOut), svc, l)
		counter(c.errors, float64(f.Errors), svc, l)
		counter(c.refused, float64(f.Refused), svc, l)
		counter(c.authFailures, float64(f.AuthFailures), svc, l)
		counter(c.tlsFailed, float64(f.TLSFailed), svc, l)
	}
	for _, b := range sv.Backends {
		if !once("backend", svc, b.Addr) {
			continue
		}
		gauge(c.backendUp, b2f(backendIsUp(b.State)), svc, b.Addr)
		gauge(c.backendMaster, b2f(b.IsMaster), svc, b.Addr)
		gauge(c.backendLag, float64(b.LagBytes), svc, b.Addr)
		gauge(c.backendOffset, float64(b.Offset), svc, b.Addr)
		gauge(c.backendLink, b2f(b.LinkUp), svc, b.Addr)
		gauge(c.backendSessions, float64(b.Sessions), svc, b.Addr)
		counter(c.backendCommands, float64(b.Commands), svc, b.Addr)
		counter(c.backendErrors, float64(b.Errors), svc, b.Addr)
		gauge(c.backendCheck, seconds(b.CheckDuration), svc, b.Addr)
		counter(c.backendDowntime, seconds(b.Downtime), svc, b.Addr)
	}
	for _, s := range sv.Sentinels {
		if !once("sentinel", svc, s.Addr) {
			continue
		}
		gauge(c.sentinelReachable, b2f(s.Reachable), svc, s.Addr)
		gauge(c.sentinelEpoch, float64(s.Epoch), svc, s.Addr)
	}
	gauge(c.routeEpoch, float64(sv.Route.Epoch), svc)
	gauge(c.routeHasMaster, b2f(sv.Route.Master != ""), svc)
	gauge(c.routeContradicted, b2f(sv.Route.Contradicted != ""), svc)
	gauge(c.routeEpochAhead, b2f(sv.Route.EpochAhead), svc)
	gauge(c.serviceReady, b2f(sv.Ready), svc)
	if sv.Route.Master != "" {
		gauge(c.serviceMaster, 1, svc, svc, sv.Route.Master)
	}
}
