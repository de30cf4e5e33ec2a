// Package cluster joins the redhaven nodes into one cluster: gossip
// membership with hashicorp/memberlist, consensus with hashicorp/raft, and a
// small replicated state machine (the committed route decision, backend admin
// state, planned failover requests and a bounded event history).
//
// An Agent is built with New (validates the configuration and binds the Raft
// listener, starts no goroutine) and driven by Run (creates memberlist, joins
// the seeds with backoff, starts Raft, bootstraps when bootstrap_expect
// servers are visible, reconciles gossip membership into the Raft
// configuration while leader, and cleans everything up when ctx ends).
//
// Gossip is encrypted with the cluster key and Raft runs mutual TLS 1.3
// with certificates from a CA derived from that key (or the operator's
// PKI); a multi-node configuration without either is refused (tls.go,
// DESIGN.md "Trust").
//
// Readers use plain values: State returns a copy of the FSM state, Members a
// slice of Member, and Changes a cap-1 hint channel. InContact is the fencing
// signal a proxy consults before sending writes. See DESIGN.md for the why.
package cluster
