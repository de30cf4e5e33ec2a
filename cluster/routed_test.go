package cluster

import (
	"testing"
	"time"
)

// TestRoutedNoteFollows: the rule WaitRouted applies to each member's
// answer. A proxy follows a pause only once its route was computed from
// that very decision (or a later epoch) and it sends writes nowhere.
func TestRoutedNoteFollows(t *testing.T) {
	at := time.Date(2026, 12, 6, 22, 0, 0, 123456789, time.UTC)
	old := RouteDecision{Master: "10.0.0.1:6379", Epoch: 3, Time: at.Add(-time.Minute), DecidedBy: "n1"}
	pause := RouteDecision{Master: "", Epoch: 3, Time: at, DecidedBy: "n1"}
	restored := RouteDecision{Master: "10.0.0.1:6379", Epoch: 3, Time: at.Add(time.Second), DecidedBy: "n1"}
	newer := RouteDecision{Master: "10.0.0.2:6379", Epoch: 4, Time: at.Add(2 * time.Second), DecidedBy: "n2"}
	for _, tc := range []struct {
		name string
		note routedNote
		want bool
	}{
		{"still the old decision, routing to the old master", routedNote{From: old, Master: old.Master}, false},
		{"old decision but out of contact (routes nowhere)", routedNote{From: old}, false},
		{"the pause, routing nowhere", routedNote{From: pause}, true},
		{"the pause but a handover seed still routes to the old master", routedNote{From: pause, Master: old.Master}, false},
		{"same epoch, no master, another pause (another leader's)", routedNote{From: RouteDecision{Epoch: 3, Time: at, DecidedBy: "n2"}}, false},
		{"same epoch, no master, earlier time", routedNote{From: RouteDecision{Epoch: 3, Time: at.Add(-time.Millisecond), DecidedBy: "n1"}}, false},
		{"the restored route at the same epoch", routedNote{From: restored, Master: restored.Master}, false},
		{"a later epoch, routing nowhere", routedNote{From: newer}, true},
		{"a later epoch, routing to its new master", routedNote{From: newer, Master: newer.Master}, false},
		{"the pause, decoded time in another zone", routedNote{From: RouteDecision{Epoch: 3, Time: at.In(time.FixedZone("x", 3600)), DecidedBy: "n1"}}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.note.follows(pause); got != tc.want {
				t.Errorf("follows(pause) = %v, want %v (note %+v)", got, tc.want, tc.note)
			}
		})
	}
}
