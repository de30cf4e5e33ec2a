// Package chaos holds the recorded history of the fault-injection runs
// (`make chaos`) and the programs that check it: linearizability of the
// register workload (porcupine), acknowledged writes lost from the list
// workload and why, and availability. It is plain logic on recorded
// values, tested without Docker; the runs themselves live in package e2e
// behind the build tag.
package chaos

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"strings"
)

// Op kinds of the workload: a register per key (SET of a unique value,
// GET) and an append-only list per key (RPUSH of a unique value, LRANGE).
const (
	KindSet    = "set"
	KindGet    = "get"
	KindRPush  = "rpush"
	KindLRange = "lrange"
)

// Outcomes of an operation.
const (
	// OK: acknowledged, with its result.
	OK = "ok"
	// Fail: definitely not applied (the proxy held it and answered
	// -MASTERDOWN, or Redis refused it before running it).
	Fail = "fail"
	// Unknown: may or may not have been applied (timeout, connection lost,
	// the proxy's "outcome unknown").
	Unknown = "unknown"
)

// Op is one client operation, as the workload client records it.
type Op struct {
	Client int      `json:"client"`          // workload client number
	Conn   int      `json:"conn"`            // connection number of that client
	Via    string   `json:"via"`             // "vip" or the node whose proxy the client uses
	Kind   string   `json:"kind"`            // set, get, rpush, lrange
	Key    string   `json:"key"`             // without the workload prefix
	Value  string   `json:"value,omitempty"` // set/rpush argument; get result ("" = nil)
	List   []string `json:"list,omitempty"`  // lrange result, after the first Known values
	// Known: an lrange result extends the same client's previous read of
	// the key, whose Known values it starts with; 0 = List is the whole
	// result (see ReadRecorder; ExpandReads rebuilds whole lists).
	Known    int    `json:"known,omitempty"`
	Invoke   int64  `json:"invoke"`   // Unix ns
	Complete int64  `json:"complete"` // Unix ns
	Outcome  string `json:"outcome"`
	Err      string `json:"err,omitempty"`
}

// IsWrite tells SET and RPUSH from the reads.
func (o Op) IsWrite() bool { return o.Kind == KindSet || o.Kind == KindRPush }

// Classify turns a client error text into an outcome. The proxy's own
// replies are definite where the command was never sent (held and then
// refused); a lost connection, a timeout or "outcome unknown" is not.
func Classify(errText string, connectionError bool) string {
	switch {
	case errText == "":
		return OK
	case connectionError:
		return Unknown
	case strings.Contains(errText, "outcome unknown"):
		return Unknown
	case strings.HasPrefix(errText, "MASTERDOWN"), strings.HasPrefix(errText, "READONLY"),
		strings.HasPrefix(errText, "NOAUTH"), strings.HasPrefix(errText, "WRONGTYPE"),
		strings.HasPrefix(errText, "LOADING"), strings.HasPrefix(errText, "BUSY"):
		return Fail
	}
	// Any other error reply: Redis answered, so the command ran or was
	// refused as a whole; treat it as not applied but keep it visible.
	return Fail
}

// WriteOps appends ops to a JSON-lines file.
func WriteOps(path string, ops []Op) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	enc := json.NewEncoder(w)
	for _, o := range ops {
		if err := enc.Encode(o); err != nil {
			f.Close()
			return err
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// ReadOps reads a JSON-lines history.
func ReadOps(path string) ([]Op, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var ops []Op
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for line := 1; sc.Scan(); line++ {
		var o Op
		if err := json.Unmarshal(sc.Bytes(), &o); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, line, err)
		}
		ops = append(ops, o)
	}
	return ops, sc.Err()
}

// Window is a time span of a fault, Unix ns.
type Window struct {
	Kind   string `json:"kind"`   // e.g. kill-redis, pause-agent, partition
	Target string `json:"target"` // node name
	Start  int64  `json:"start"`  // the nemesis began to apply it
	End    int64  `json:"end"`
	// Applied: when the command that applied the fault returned (the
	// `docker exec` of the signal, `docker kill`, the partition's link
	// removal), Unix ns; 0 = not recorded (Start). The fault took effect
	// somewhere in [Start, Applied]: under load `docker exec` takes a
	// second or more, and a master keeps acknowledging until then.
	Applied int64 `json:"applied,omitempty"`
	// LosesWrites: this fault took the Redis master away without telling it
	// (kill -9, node death, partition or pause of the master's node), so
	// Sentinel fails over and the writes the master acknowledged but had
	// not replicated yet are lost by Redis's asynchronous replication,
	// which no proxy can prevent. Planned failovers, agent faults and
	// faults of replicas do not lose writes.
	LosesWrites bool `json:"loses_writes"`
	// Wipes: the fault killed the master's Redis and restarted it while
	// the Sentinels still named it master (no failover: seed 1's three
	// Sentinels split their votes). The e2e Redis has no persistence, so
	// it came back empty and its replicas resynced from it, dropping every
	// earlier write: Redis's documented hazard of a master without
	// persistence that restarts, not the proxy's doing.
	Wipes bool `json:"wipes,omitempty"`
}

// applied is the latest moment the fault can have taken effect.
func (w Window) applied() int64 { return max(w.Start, w.Applied) }

func (w Window) overlaps(from, to int64) bool { return from <= w.End && to >= w.Start }
