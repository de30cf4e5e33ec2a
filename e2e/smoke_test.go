//go:build e2e

package e2e

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

// smokeVersion is the version the smoke test builds into its own .deb.
const smokeVersion = "v0.0.0-e2e"

// nodeImage returns the node image for this run: from $REDHAVEN_DEB (what
// `make package` built) or from a .deb built here from the working tree.
// It also returns the version `redhaven version` must print ("" = any).
func nodeImage(t *testing.T, ctx context.Context) (image, version string) {
	t.Helper()
	deb, version := testDeb(t, ctx)
	image, err := NodeImage(ctx, deb)
	if err != nil {
		t.Fatal(err)
	}
	return image, version
}

// TestSmoke starts two node containers from the .deb on an internal
// network: the package is installed, redhaven runs, Redis in one container
// answers the other, and everything is removed afterwards.
func TestSmoke(t *testing.T) {
	RequireDocker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	image, version := nodeImage(t, ctx)

	env := NewEnv(t)
	if internal, err := Docker(ctx, "network", "inspect", "-f", "{{.Internal}}", env.Network); err != nil || internal != "true" {
		t.Fatalf("network %s internal = %q, %v; want true", env.Network, internal, err)
	}
	for _, n := range []string{"n1", "n2"} {
		env.Start(n, image, []string{"--cap-add", "NET_ADMIN"})
	}

	for _, n := range []string{"n1", "n2"} {
		out, err := env.Exec(ctx, n, "redhaven", "version")
		if err != nil || !strings.HasPrefix(out, "redhaven ") || !strings.Contains(out, version) {
			t.Errorf("%s: redhaven version = %q, %v; want redhaven %s", n, out, err, version)
		}
		if out, err := env.Exec(ctx, n, "dpkg-query", "-W", "-f", "${Status}", "redhaven"); out != "install ok installed" {
			t.Errorf("%s: dpkg status %q, %v", n, out, err)
		}
		if out, err := env.Exec(ctx, n, "id", "-nG", "redhaven"); out != "redhaven" {
			t.Errorf("%s: groups of user redhaven = %q, %v", n, out, err)
		}
	}

	if out, err := env.Exec(ctx, "n1", "redis-server", "--daemonize", "yes", "--bind", "0.0.0.0",
		"--protected-mode", "no", "--save", "", "--appendonly", "no"); err != nil {
		t.Fatalf("start redis-server in n1: %v\n%s", err, out)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := env.Exec(ctx, "n2", "redis-cli", "-h", "n1", "ping")
		if err == nil && out == "PONG" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis in n1 not reachable from n2 within 30s: %q, %v", out, err)
		}
		time.Sleep(100 * time.Millisecond) // polling with a deadline
	}

	// NET_ADMIN is what the VIP needs: the agent can add an address.
	if out, err := env.Exec(ctx, "n1", "ip", "addr", "add", "192.0.2.10/32", "dev", "lo"); err != nil {
		t.Errorf("ip addr add with NET_ADMIN: %v\n%s", err, out)
	}

	env.Close()
	for _, what := range [][]string{
		{"ps", "-aq", "--filter", "name=" + env.Name("")},
		{"network", "ls", "-q", "--filter", "name=" + env.Network},
	} {
		if out, err := Docker(ctx, what...); err != nil || out != "" {
			t.Errorf("left after Close: docker %s = %q, %v", strings.Join(what, " "), out, err)
		}
	}
}

// testDeb returns the .deb under test: $REDHAVEN_DEB (what `make package`
// built) or one built here from the working tree, and the version
// `redhaven version` must print ("" = any).
func testDeb(t *testing.T, ctx context.Context) (deb, version string) {
	t.Helper()
	if deb = os.Getenv("REDHAVEN_DEB"); deb != "" {
		return deb, ""
	}
	deb, err := BuildDeb(ctx, t.TempDir(), smokeVersion)
	if err != nil {
		t.Fatal(err)
	}
	return deb, smokeVersion
}

// upgradeDeb builds, from the working tree, a .deb that upgrades the
// installed version (a deb version, as dpkg-query prints it) and returns
// it with its version: installed+"+upgrade", which dpkg sorts after
// installed whatever it is (a suffix that does not start with '~') and
// packaging.CleanVersion keeps as it is, so that the new binary prints it
// too. Only the link and the packaging run again (the build cache has the
// rest): a few seconds, once per test that upgrades.
func upgradeDeb(t *testing.T, ctx context.Context, installed string) (deb, version string) {
	t.Helper()
	if installed == "" {
		t.Fatal("upgradeDeb: no installed version")
	}
	version = installed + "+upgrade"
	began := time.Now()
	deb, err := BuildDeb(ctx, t.TempDir(), version)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("upgrade .deb %s built in %v", deb, time.Since(began).Round(time.Millisecond))
	return deb, version
}
