package node

import (
	"testing"
	"time"

	"github.com/redhaven/redhaven/cluster"
)

// TestLeaseRemaining: the holder counts to its own lease end, the others
// to when they may judge it expired; free or over is 0.
func TestLeaseRemaining(t *testing.T) {
	now := time.Now()
	held := cluster.VIPLease{Holder: "n1"}
	for _, tt := range []struct {
		name string
		ls   cluster.LeaseStatus
		want time.Duration
	}{
		{"free", cluster.LeaseStatus{ExpiredAt: now.Add(time.Second)}, 0},
		{"holder", cluster.LeaseStatus{Lease: held, HeldUntil: now.Add(800 * time.Millisecond), ExpiredAt: now.Add(time.Second)}, 800 * time.Millisecond},
		{"other node", cluster.LeaseStatus{Lease: held, ExpiredAt: now.Add(time.Second)}, time.Second},
		{"expired", cluster.LeaseStatus{Lease: held, ExpiredAt: now.Add(-time.Second)}, 0},
		{"never applied", cluster.LeaseStatus{Lease: held}, 0},
	} {
		if got := leaseRemaining(tt.ls, now); got != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
}
