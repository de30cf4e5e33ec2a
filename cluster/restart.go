package cluster

// StayOnStop makes Run end without leaving the cluster
// (cluster.leave_on_terminate): the process is being replaced by a new
// one for the same node (a hand-over restart), which takes its Raft state
// and place back at once.
func (a *Agent) StayOnStop() { a.restarting.Store(true) }
