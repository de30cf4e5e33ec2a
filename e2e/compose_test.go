//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redhaven/redhaven/e2e/testutil"
)

// TestCompose runs packaging/docker-compose.yml as shipped, for one node
// on this host's loopback (host networking, as the file is meant for):
// the image from `make image`, Redis, Sentinel and the agent come up, the
// agent routes a client's SET/GET through its proxy to the Redis of the
// compose file, and `docker-compose stop` ends the agent with its orderly
// shutdown. Every port is a free one, so it runs beside other tests.
func TestCompose(t *testing.T) {
	RequireDocker(t)
	if _, err := exec.LookPath("docker-compose"); err != nil {
		testutil.Require(t, "docker", "docker-compose not on PATH (apt-get install docker-compose)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	deb := os.Getenv("REDHAVEN_DEB")
	if deb == "" {
		var err error
		if deb, err = BuildDeb(ctx, t.TempDir(), smokeVersion); err != nil {
			t.Fatal(err)
		}
	}
	image, err := imageScript(ctx, "app", deb, "0.0.0-e2e")
	if err != nil {
		t.Fatal(err)
	}
	root, err := ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	compose, err := os.ReadFile(filepath.Join(root, "packaging", "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	port := func() int { return testutil.FreePort(t) }
	redisPort, sentinelPort, proxyPort := port(), port(), port()
	files := map[string]string{
		"docker-compose.yml": string(compose),
		".env": fmt.Sprintf("NODE_IP=127.0.0.1\nMASTER_IP=127.0.0.1\nREDIS_PORT=%d\nSENTINEL_PORT=%d\nQUORUM=1\nREDHAVEN_IMAGE=%s\n",
			redisPort, sentinelPort, image),
		"redhaven.yaml": fmt.Sprintf(`node_name: compose1
redis:
  sentinels: ["127.0.0.1:%d"]
  check_interval: 250ms
proxy:
  listen: "127.0.0.1:%d"
cluster:
  bind: "127.0.0.1:%d"
  raft_bind: "127.0.0.1:%d"
  bootstrap_expect: 1
http:
  listen: "127.0.0.1:%d"
`, sentinelPort, proxyPort, port(), port(), port()),
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	project := fmt.Sprintf("rhcompose%d", os.Getpid())
	dc := func(args ...string) (string, error) {
		// Not under ctx: the cleanup's `down` runs after ctx is cancelled.
		c, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(c, "docker-compose", append([]string{"-p", project}, args...)...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	t.Cleanup(func() {
		if out, err := dc("down", "-v", "-t", "20"); err != nil {
			t.Logf("docker-compose down: %v\n%s", err, out)
		}
	})
	if out, err := dc("up", "-d"); err != nil {
		t.Fatalf("docker-compose up: %v\n%s", err, out)
	}

	want := fmt.Sprintf("127.0.0.1:%d", redisPort)
	var status string
	testutil.Eventually(t, 90*time.Second, "the agent routes to the compose file's Redis", func() bool {
		status, err = dc("exec", "-T", "redhaven", "redhaven", "status")
		return err == nil && strings.Contains(status, "master:   "+want)
	})
	rc := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", proxyPort)})
	defer rc.Close()
	if err := rc.Set(ctx, "compose", "ok", 0).Err(); err != nil {
		t.Fatalf("SET through the proxy: %v", err)
	}
	if v, err := rc.Get(ctx, "compose").Result(); err != nil || v != "ok" {
		t.Fatalf("GET through the proxy: %q, %v", v, err)
	}

	if out, err := dc("stop", "-t", "30", "redhaven"); err != nil {
		t.Fatalf("docker-compose stop: %v\n%s", err, out)
	}
	logs, _ := dc("logs", "--no-color", "redhaven")
	if !strings.Contains(logs, `msg="agent stopped"`) {
		t.Errorf("the agent did not log its orderly shutdown on docker stop:\n%s", tail(logs, 15))
	}
	t.Logf("status before stop:\n%s", status)
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
