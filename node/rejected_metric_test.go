package node

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/redhaven/redhaven/e2e/testutil"
)

// TestRejectedConnectionsMetric: a plain-text connection to the Raft port
// is refused and shows in /metrics as
// redhaven_cluster_rejected_connections_total{transport="raft",reason="not_tls"}.
func TestRejectedConnectionsMetric(t *testing.T) {
	cfg := DefaultConfig()
	cfg.NodeName = "m1"
	cfg.DataDir = t.TempDir()
	cfg.Redis.MasterName = "mymaster"
	cfg.Redis.Sentinels = []string{fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))} // nobody: not needed here
	cfg.Proxy.Listen = "127.0.0.1:0"
	cfg.HTTP.Listen = "127.0.0.1:0"
	cfg.HTTP.AdminSocket = adminSocketPath(t)
	cfg.Cluster.Bind = fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	cfg.Cluster.RaftBind = fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	cfg.Cluster.BootstrapExpect = 1
	n := startAgent(t, cfg)
	const want = `redhaven_cluster_rejected_connections_total{reason="not_tls",transport="raft"} 1`
	testutil.Eventually(t, 10*time.Second, "the raft listener accepts", func() bool {
		c, err := net.DialTimeout("tcp", n.Cluster().RaftAddr(), time.Second)
		if err != nil {
			return false
		}
		defer c.Close()
		_, _ = c.Write([]byte("\x00plain text raft, no TLS\r\n\r\n"))
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, _ = c.Read(make([]byte, 64)) // until the agent closes it
		return true
	})
	testutil.Eventually(t, 10*time.Second, "/metrics counts the refusal", func() bool {
		return strings.Contains(httpGet(t, n, "/metrics"), want+"\n")
	})
}
