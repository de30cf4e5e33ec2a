package redistest

import (
	"context"
	"testing"
	"time"

	"github.com/redhaven/redhaven/e2e/testutil"
)

func TestStartSetAndFailover(t *testing.T) {
	set := StartSet(t, SetOptions{})
	if got := set.CurrentMaster(); got != set.Master.Addr {
		t.Fatalf("sentinel master = %q, want %q", got, set.Master.Addr)
	}
	if err := set.Master.Client().Set(context.Background(), "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	set.Master.Kill()
	testutil.Eventually(t, 20*time.Second, "sentinel promotes a replica", func() bool {
		m := set.CurrentMaster()
		return m != "" && m != set.Master.Addr
	})
	if set.ByAddr(set.CurrentMaster()) == nil {
		t.Fatalf("new master %q is not one of the set", set.CurrentMaster())
	}
}
