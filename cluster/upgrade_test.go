package cluster_test

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"github.com/redhaven/redhaven/cluster"
	"github.com/redhaven/redhaven/cluster/clustertest"
)

// copyDir copies the test data dir src into dst.
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o750)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestUpgradeFromSingleServiceDataDir opens a data dir written by the
// single-service release (testdata/v1-datadir, see its README: a version
// 1 snapshot at index 13 and log entries after it) and finds its route,
// admin states and planned failovers in the default service.
func TestUpgradeFromSingleServiceDataDir(t *testing.T) {
	const src = "testdata/v1-datadir"
	// The fixture is what the old release wrote: a snapshot without a
	// version, and log entries after it.
	snaps, err := filepath.Glob(filepath.Join(src, "snapshots", "*", "state.bin"))
	if err != nil || len(snaps) != 1 {
		t.Fatalf("fixture snapshots: %v %v", snaps, err)
	}
	raw, err := os.ReadFile(snaps[0])
	if err != nil {
		t.Fatal(err)
	}
	var v1 map[string]json.RawMessage
	if err := json.Unmarshal(raw, &v1); err != nil {
		t.Fatal(err)
	}
	if _, ok := v1["version"]; ok || v1["route"] == nil {
		t.Fatalf("fixture snapshot is not version 1: keys %v", slices.Sorted(func(yield func(string) bool) {
			for k := range v1 {
				if !yield(k) {
					return
				}
			}
		}))
	}
	const snapIndex = 13

	dir := t.TempDir()
	copyDir(t, src, dir)
	c := clustertest.New(t, 1, clustertest.Options{BootstrapExpect: 1, Configure: func(_ int, cfg *cluster.Config) {
		cfg.DataDir = dir // node n1, as in the old config; new ports
		cfg.Services = []string{"mymaster", "cache"}
	}})
	c.StartAll()
	c.WaitLeader(formTimeout)
	a := c.Nodes[0].Agent

	const (
		oldMaster = "127.0.0.1:45017" // master again after the second planned failover (log)
		replica   = "127.0.0.1:42275" // drained before the snapshot, still drained
	)
	check := func(a *cluster.Agent) {
		t.Helper()
		// The snapshot is restored first and the log after it applied
		// a moment later: wait for both.
		clustertest.Eventually(t, formTimeout, "the old log applied", func() bool {
			return a.State().Service("mymaster").Route.Epoch == 2 && a.Stats().AppliedIndex > snapIndex
		})
		st := a.State()
		ss := st.Service("mymaster")
		if ss.Route.Master != oldMaster || ss.Route.Epoch != 2 || ss.Route.Reason != "planned failover" || ss.Route.DecidedBy != "n1" {
			t.Fatalf("route = %+v", ss.Route)
		}
		// maintenance on oldMaster was in the snapshot and cleared by a
		// log entry after it; the drain is from the snapshot.
		if want := map[string]cluster.AdminState{replica: cluster.AdminDrain}; !reflect.DeepEqual(ss.Admin, want) {
			t.Fatalf("admin = %v, want %v", ss.Admin, want)
		}
		if len(ss.Failovers) < 2 || ss.Failovers[0].ID != 6 || ss.Failovers[0].Status != cluster.FailoverCompleted ||
			ss.Failovers[1].ID <= snapIndex || ss.Failovers[1].Status != cluster.FailoverCompleted {
			t.Fatalf("failovers = %+v", ss.Failovers)
		}
		if k := st.Service("cache"); k.Route != (cluster.RouteDecision{}) || len(k.Admin) != 0 || len(k.Failovers) != 0 {
			t.Fatalf("the old state leaked into another service: %+v", k)
		}
		if len(st.Events) == 0 {
			t.Fatal("event history lost")
		}
	}
	check(a)

	// The upgraded service keeps its rules: the epoch does not go back, and
	// a new planned failover (none pending) is accepted for it.
	if err := a.ProposeRoute(ctxT(t), "mymaster", cluster.RouteDecision{Master: replica, Epoch: 1}); !errors.Is(err, cluster.ErrStaleEpoch) {
		t.Fatalf("epoch 1 after the upgrade: %v, want ErrStaleEpoch", err)
	}
	id, err := a.RequestFailover(ctxT(t), "", "after upgrade")
	if err != nil {
		t.Fatal(err)
	}
	if p, ok := a.State().Service("mymaster").PendingFailover(); !ok || p.ID != id {
		t.Fatalf("pending = %+v %v, want id %d in the default service", p, ok, id)
	}

	// Restarted, the new release reads its own writes on top of the old.
	c.Stop(0)
	a = c.Start(0)
	c.WaitLeader(formTimeout)
	check(a)
	clustertest.Eventually(t, formTimeout, "the pending failover back", func() bool {
		p, ok := a.State().Service("mymaster").PendingFailover()
		return ok && p.ID == id
	})
}
