package node

import (
	"fmt"
	"testing"

	"github.com/redhaven/redhaven/cluster"
	"github.com/redhaven/redhaven/proxy/topology"
)

// TestEpochRuleAgrees checks that the watcher's floor (topology.AboveFloor)
// and the committed rule (cluster.RouteDecision.Replaces, used by node, the
// cluster API and the FSM) give the same answer for every claim both see.
// The two packages may not import each other, so node, which wires them,
// holds the cross-check.
func TestEpochRuleAgrees(t *testing.T) {
	const a, b = "10.0.0.1:6379", "10.0.0.2:6379"
	for _, owner := range []string{"", a} {
		for _, addr := range []string{a, b} {
			for _, delta := range []int64{-1, 0, 1} {
				const floor = 5
				epoch := floor + delta
				name := fmt.Sprintf("owner=%q/addr=%s/epoch%+d", owner, addr, delta)
				watcher := topology.AboveFloor(owner, floor, addr, epoch)
				_, err := cluster.RouteDecision{Master: addr, Epoch: epoch}.Replaces(cluster.RouteDecision{Master: owner, Epoch: floor})
				committed := err == nil // a duplicate is accepted as "nothing to do"
				if addr == owner && delta < 0 {
					// The one intended difference: a Sentinel that lags still
					// names the owner at an older epoch; the watcher keeps the
					// owner at the floor's epoch (so what node proposes is a
					// duplicate), while a committed decision never goes back.
					if !watcher || committed {
						t.Errorf("%s: watcher keeps the owner (%v), committed rule refuses the lower epoch (%v)", name, watcher, committed)
					}
					continue
				}
				if watcher != committed {
					t.Errorf("%s: watcher AboveFloor=%v, cluster Replaces accepts=%v (err %v)", name, watcher, committed, err)
				}
			}
		}
	}
}
