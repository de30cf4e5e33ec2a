package topology

import (
	"reflect"
	"testing"
)

func TestReplicationTarget(t *testing.T) {
	info := "# Replication\r\nrole:master\r\nconnected_slaves:3\r\n" +
		"slave0:ip=127.0.0.1,port=7002,state=online,offset=100,lag=0\r\n" +
		"slave1:ip=127.0.0.1,port=7003,state=online,offset=90,lag=1\r\n" +
		"slave2:ip=127.0.0.1,port=7004,state=wait_bgsave,offset=0,lag=0\r\n" +
		"master_repl_offset:100\r\n"
	off, replicas := replicationTarget(info)
	if off != 100 || !reflect.DeepEqual(replicas, []string{"127.0.0.1:7002", "127.0.0.1:7003"}) {
		t.Fatalf("got offset %d replicas %v", off, replicas)
	}
	if off, _ := replicationTarget("role:master\r\n"); off != -1 {
		t.Fatalf("missing offset should be -1, got %d", off)
	}
}
