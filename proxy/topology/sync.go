package topology

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// WaitReplicasInSync polls master's INFO replication every few
// milliseconds until every connected replica has acknowledged the master's
// replication offset (so a failover started now loses no acknowledged
// write), or ctx ends. It returns how many replicas are in sync.
// Meant to be called while writes are paused (planned failover).
func (w *Watcher) WaitReplicasInSync(ctx context.Context, master string) (int, error) {
	c, err := dialRESP(ctx, master, w.nodeCreds, w.cfg.DialTimeout)
	if err != nil {
		return 0, err
	}
	defer c.close()
	for i := 0; ; i++ {
		v, err := c.do(time.Second, "INFO", "replication")
		if err != nil {
			return 0, fmt.Errorf("info replication on %s: %w", master, err)
		}
		masterOffset, lagging, inSync := replicationProgress(asString(v))
		if masterOffset >= 0 && lagging == 0 {
			return inSync, nil
		}
		select {
		case <-ctx.Done():
			return inSync, fmt.Errorf("%d replica(s) of %s still behind offset %d: %w", lagging, master, masterOffset, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// replicationProgress reads a master's INFO replication: its offset, and
// how many online replicas are behind it / in sync with it.
func replicationProgress(info string) (masterOffset int64, lagging, inSync int) {
	masterOffset = -1
	var offsets []int64
	for _, line := range strings.Split(info, "\n") {
		line = strings.TrimSpace(line)
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		switch {
		case k == "master_repl_offset":
			masterOffset, _ = strconv.ParseInt(v, 10, 64)
		case strings.HasPrefix(k, "slave") && strings.Contains(v, "offset="):
			fields := map[string]string{}
			for _, f := range strings.Split(v, ",") {
				fk, fv, _ := strings.Cut(f, "=")
				fields[fk] = fv
			}
			if fields["state"] != "online" {
				continue
			}
			off, _ := strconv.ParseInt(fields["offset"], 10, 64)
			offsets = append(offsets, off)
		}
	}
	for _, off := range offsets {
		if off >= masterOffset {
			inSync++
		} else {
			lagging++
		}
	}
	return masterOffset, lagging, inSync
}
