package proxy

// Route is where the proxy sends commands right now. It is a plain value.
type Route struct {
	// Master is the "host:port" that receives every command of the
	// read-write listener. "" means no master may be used (none known, or
	// this node is fenced off from the cluster): commands wait up to
	// hold_timeout for a route, then fail.
	Master string
	// Epoch identifies the decision; a change of Master comes with a
	// higher epoch or a new decision.
	Epoch int64
	// Replicas are the healthy replicas the read-only listener may use,
	// best first. Empty means reads go to the master.
	Replicas []string
	// Replaced, with Master "", is a master that Sentinel has replaced
	// by one not routed to yet: no reply from it reaches a client as
	// success (it may be lost when it rejoins as a replica). "" when not
	// known, e.g. writes paused for a planned failover, whose in-flight
	// replies are awaited.
	Replaced string
}

// RouteSource gives the current route and tells when it changes. A
// notification is only a hint: the proxy re-reads Route on every hint.
type RouteSource interface {
	Route() Route
	RouteChanges() <-chan struct{}
}
