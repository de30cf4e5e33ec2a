package topology

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// WaitReplicasInSync waits until every online replica of master has
// applied the master's current replication offset (so a failover started
// now loses no acknowledged write), or ctx ends. It reads the master's
// offset and replica list once, then polls each replica's own
// slave_repl_offset every few milliseconds: the master's view of replica
// offsets only moves on REPLCONF ACK, once a second. Meant to be called
// while writes are paused (planned failover). It returns how many
// replicas are in sync.
func (w *Watcher) WaitReplicasInSync(ctx context.Context, master string) (int, error) {
	mc, err := dialRESP(ctx, master, w.nodeCreds, w.cfg.DialTimeout)
	if err != nil {
		return 0, err
	}
	v, err := mc.do(time.Second, "INFO", "replication")
	mc.close()
	if err != nil {
		return 0, fmt.Errorf("info replication on %s: %w", master, err)
	}
	target, replicas := replicationTarget(asString(v))
	if target < 0 {
		return 0, fmt.Errorf("%s reports no master_repl_offset", master)
	}
	inSync := 0
	var errs []error
	for _, addr := range replicas {
		if err := w.waitReplicaOffset(ctx, addr, target); err != nil {
			errs = append(errs, err)
			continue
		}
		inSync++
	}
	if len(errs) > 0 {
		return inSync, fmt.Errorf("%d of %d replica(s) of %s not at offset %d: %w", len(errs), len(replicas), master, target, errors.Join(errs...))
	}
	return inSync, nil
}

// waitReplicaOffset polls one replica until its slave_repl_offset reaches target.
func (w *Watcher) waitReplicaOffset(ctx context.Context, addr string, target int64) error {
	c, err := dialRESP(ctx, addr, w.nodeCreds, w.cfg.DialTimeout)
	if err != nil {
		return err
	}
	defer c.close()
	for {
		v, err := c.do(time.Second, "INFO", "replication")
		if err != nil {
			return fmt.Errorf("info replication on %s: %w", addr, err)
		}
		off := infoInt(asString(v), "slave_repl_offset")
		if off >= target {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s at offset %d: %w", addr, off, ctx.Err())
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// infoInt reads one integer field of an INFO reply, -1 when absent.
func infoInt(info, key string) int64 {
	for _, line := range strings.Split(info, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok && k == key {
			n, err := strconv.ParseInt(v, 10, 64)
			if err == nil {
				return n
			}
		}
	}
	return -1
}

// replicationTarget reads a master's INFO replication: its offset and the
// addresses of its online replicas.
func replicationTarget(info string) (offset int64, replicas []string) {
	for _, line := range strings.Split(info, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || !strings.HasPrefix(k, "slave") || !strings.Contains(v, "state=") {
			continue
		}
		f := map[string]string{}
		for _, kv := range strings.Split(v, ",") {
			fk, fv, _ := strings.Cut(kv, "=")
			f[fk] = fv
		}
		if f["state"] == "online" {
			replicas = append(replicas, net.JoinHostPort(f["ip"], f["port"]))
		}
	}
	return infoInt(info, "master_repl_offset"), replicas
}
