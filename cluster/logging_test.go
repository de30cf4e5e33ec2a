package cluster

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
)

func TestLogAdapters(t *testing.T) {
	var buf bytes.Buffer
	l := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))

	h := newHCLog(l, "raft").Named("snap").With("k", 1)
	h.Warn("disk slow", "path", "/x", "servers", hclog.Fmt("%d servers", 3))
	h.Trace("hidden")
	out := buf.String()
	for _, want := range []string{"level=WARN", `msg="disk slow"`, "lib=raft.snap", "k=1", "path=/x", `servers="3 servers"`} {
		if !strings.Contains(out, want) {
			t.Errorf("hclog output %q lacks %q", out, want)
		}
	}
	if strings.Contains(out, "hidden") {
		t.Errorf("trace logged at debug level: %q", out)
	}

	tests := []struct {
		line, want string
	}{
		{"[DEBUG] memberlist: Stream connection from=127.0.0.1:1", "level=DEBUG"},
		{"[WARN] memberlist: Was able to connect to n2 over TCP but UDP probes failed", "level=WARN"},
		{"[ERR] memberlist: Failed fallback TCP ping: EOF", "level=WARN"},
		{"[ERR] memberlist: failed to receive: No installed keys could decrypt the message from=127.0.0.1:5", "check cluster.encrypt"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			buf.Reset()
			newStdLogger(l).Println(tt.line)
			if !strings.Contains(buf.String(), tt.want) {
				t.Fatalf("%q logged as %q, want %q", tt.line, buf.String(), tt.want)
			}
		})
	}
}
