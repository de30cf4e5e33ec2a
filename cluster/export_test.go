package cluster

// MarkLeaving announces the leave intent in the gossip metadata as Leave
// does first, without waiting for the removal (tests).
func (a *Agent) MarkLeaving() {
	a.leaving.Store(true)
	a.setMeta(func(m *nodeMeta) { m.Leaving = true })
}
