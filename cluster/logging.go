package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"strings"

	"github.com/hashicorp/go-hclog"
)

// hclogAdapter sends raft's hclog output to slog.
type hclogAdapter struct {
	base  *slog.Logger // without the lib attribute
	l     *slog.Logger
	name  string
	args  []any
	limit *throttle // nil: no throttling
}

func newHCLog(l *slog.Logger, name string) hclog.Logger {
	return &hclogAdapter{base: l, l: l, name: name}
}

// raftPeerNoise are raft's messages about one unreachable peer, logged at
// ERROR on every retry (about 4 a second per peer). They are throttled per
// message and peer, logged at WARN, and the throttle is reset when the
// peer answers again (ResumedHeartbeatObservation, see observeLoop).
var raftPeerNoise = map[string]bool{
	"failed to heartbeat to":                  true,
	"failed to appendEntries to":              true,
	"failed to pipeline appendEntries":        true,
	"failed to start pipeline replication to": true,
	"failed to make requestVote RPC":          true,
	"failed to contact":                       true,
}

// raftPeerThrottlePrefix prefixes the throttle keys of raftPeerNoise.
const raftPeerThrottlePrefix = "raftpeer/"

// peerArg returns the value of the peer (or target/server-id) argument.
func peerArg(args []any) string {
	for i := 0; i+1 < len(args); i += 2 {
		switch args[i] {
		case "peer", "target", "server-id":
			return fmt.Sprint(args[i+1])
		}
	}
	return ""
}

func hcLevel(level hclog.Level) slog.Level {
	switch level {
	case hclog.Trace:
		return slog.LevelDebug - 4
	case hclog.Debug:
		return slog.LevelDebug
	case hclog.Info, hclog.NoLevel, hclog.DefaultLevel:
		return slog.LevelInfo
	case hclog.Warn:
		return slog.LevelWarn
	default:
		return slog.LevelError
	}
}

func (h *hclogAdapter) Log(level hclog.Level, msg string, args ...any) {
	lv := hcLevel(level)
	ctx := context.Background()
	suppressed := -1
	if h.limit != nil && lv >= slog.LevelWarn && raftPeerNoise[msg] {
		ok, n := h.limit.allow(raftPeerThrottlePrefix + msg + "/" + peerArg(args))
		if !ok {
			return
		}
		lv, suppressed = slog.LevelWarn, n
	}
	if !h.l.Enabled(ctx, lv) {
		return
	}
	all := make([]any, 0, len(h.args)+len(args)+2)
	all = append(all, h.args...)
	for _, v := range args {
		if f, ok := v.(hclog.Format); ok && len(f) > 0 {
			if s, ok := f[0].(string); ok {
				v = fmt.Sprintf(s, f[1:]...)
			}
		}
		all = append(all, v)
	}
	if suppressed >= 0 {
		all = append(all, "suppressed_since_last", suppressed)
	}
	h.l.Log(ctx, lv, msg, all...)
}

func (h *hclogAdapter) Trace(msg string, args ...any) { h.Log(hclog.Trace, msg, args...) }
func (h *hclogAdapter) Debug(msg string, args ...any) { h.Log(hclog.Debug, msg, args...) }
func (h *hclogAdapter) Info(msg string, args ...any)  { h.Log(hclog.Info, msg, args...) }
func (h *hclogAdapter) Warn(msg string, args ...any)  { h.Log(hclog.Warn, msg, args...) }
func (h *hclogAdapter) Error(msg string, args ...any) { h.Log(hclog.Error, msg, args...) }

func (h *hclogAdapter) enabled(level hclog.Level) bool {
	return h.l.Enabled(context.Background(), hcLevel(level))
}
func (h *hclogAdapter) IsTrace() bool { return h.enabled(hclog.Trace) }
func (h *hclogAdapter) IsDebug() bool { return h.enabled(hclog.Debug) }
func (h *hclogAdapter) IsInfo() bool  { return h.enabled(hclog.Info) }
func (h *hclogAdapter) IsWarn() bool  { return h.enabled(hclog.Warn) }
func (h *hclogAdapter) IsError() bool { return h.enabled(hclog.Error) }

func (h *hclogAdapter) ImpliedArgs() []any { return h.args }
func (h *hclogAdapter) With(args ...any) hclog.Logger {
	c := *h
	c.args = append(append([]any{}, h.args...), args...)
	return &c
}
func (h *hclogAdapter) Name() string { return h.name }
func (h *hclogAdapter) Named(name string) hclog.Logger {
	if h.name != "" {
		name = h.name + "." + name
	}
	return h.ResetNamed(name)
}
func (h *hclogAdapter) ResetNamed(name string) hclog.Logger {
	c := *h
	c.name = name
	c.l = h.base.With("lib", name)
	return &c
}
func (h *hclogAdapter) SetLevel(hclog.Level) {}
func (h *hclogAdapter) GetLevel() hclog.Level {
	switch {
	case h.IsTrace():
		return hclog.Trace
	case h.IsDebug():
		return hclog.Debug
	case h.IsInfo():
		return hclog.Info
	case h.IsWarn():
		return hclog.Warn
	}
	return hclog.Error
}
func (h *hclogAdapter) StandardLogger(*hclog.StandardLoggerOptions) *log.Logger {
	return log.New(h.StandardWriter(nil), "", 0)
}
func (h *hclogAdapter) StandardWriter(*hclog.StandardLoggerOptions) io.Writer {
	return &stdWriter{l: h.l}
}

// stdWriter turns log.Logger lines of the form "[LEVEL] lib: message" (as
// written by memberlist and raft's standard loggers) into slog records.
type stdWriter struct {
	l *slog.Logger
	// limit throttles warnings (nil: none); reject counts gossip messages
	// refused for their key (nil: not counted, logged unthrottled).
	limit  *throttle
	reject func(reason, remote string, err error)
}

// keyMismatchHints are memberlist error texts that mean the peers do not
// share the gossip key.
var keyMismatchHints = []string{
	"no installed keys could decrypt",
	"encryption is configured but remote state is not encrypted",
	"remote state is encrypted and encryption is not configured",
	"decrypt",
}

func (w *stdWriter) Write(p []byte) (int, error) {
	for line := range bytes.Lines(p) {
		w.line(strings.TrimSpace(string(line)))
	}
	return len(p), nil
}

func (w *stdWriter) line(s string) {
	if s == "" {
		return
	}
	lv := slog.LevelInfo
	if strings.HasPrefix(s, "[") {
		if i := strings.IndexByte(s, ']'); i > 0 {
			switch s[1:i] {
			case "TRACE", "DEBUG":
				lv = slog.LevelDebug
			case "WARN":
				lv = slog.LevelWarn
			case "ERR", "ERROR":
				lv = slog.LevelError
			}
			s = strings.TrimSpace(s[i+1:])
		}
	}
	s = strings.TrimPrefix(s, "memberlist: ")
	lower := strings.ToLower(s)
	for _, h := range keyMismatchHints {
		if strings.Contains(lower, h) {
			if w.reject != nil {
				w.reject(RejectDecrypt, fromAddr(s), errors.New(s))
				return
			}
			w.l.Warn("gossip message rejected: peer uses a different or no encryption key, check cluster.encrypt on every node",
				"detail", s)
			return
		}
	}
	// memberlist logs network errors of a peer at ERR; they are retried
	// faults for us.
	if lv == slog.LevelError {
		lv = slog.LevelWarn
	}
	// memberlist's per-peer and per-packet faults (a dead peer probed every
	// second, garbage packets) repeat: first one, then a count.
	if w.limit != nil && lv >= slog.LevelInfo {
		ok, n := w.limit.allow("memberlist/" + throttleShape(s))
		if !ok {
			return
		}
		if n > 0 {
			w.l.Log(context.Background(), lv, "memberlist", "detail", s, "suppressed_since_last", n)
			return
		}
	}
	w.l.Log(context.Background(), lv, "memberlist", "detail", s)
}

// fromAddr extracts memberlist's "from=ip:port" from a log line.
func fromAddr(s string) string {
	_, rest, ok := strings.Cut(s, "from=")
	if !ok {
		return ""
	}
	if i := strings.IndexAny(rest, " \t"); i >= 0 {
		rest = rest[:i]
	}
	return rest
}

// throttleShape reduces a log line to its throttle key: the sender's host
// when memberlist names it (one noisy source, one line per window, whatever
// garbage it sends), else the text before the first ':' without digits,
// at most 80 bytes (the same fault from many packets, each with its own
// checksum, port or length, shares one key).
func throttleShape(s string) string {
	if from := fromAddr(s); from != "" {
		if h, _, err := net.SplitHostPort(from); err == nil {
			from = h
		}
		return "from " + from
	}
	s, _, _ = strings.Cut(s, ":")
	s = strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return -1
		}
		return r
	}, s)
	if len(s) > 80 {
		s = s[:80]
	}
	return s
}

// newStdLogger returns a *log.Logger for memberlist.
func newStdLogger(l *slog.Logger) *log.Logger {
	return log.New(&stdWriter{l: l}, "", 0)
}

// newStdLogger returns the agent's memberlist logger: warnings throttled,
// key mismatches counted as rejected gossip.
func (a *Agent) newStdLogger() *log.Logger {
	return log.New(&stdWriter{l: a.log, limit: a.logLimit, reject: func(reason, remote string, err error) {
		a.countReject("gossip", reason, remote, err)
	}}, "", 0)
}

// newHCLog returns the agent's raft logger, with raftPeerNoise throttled.
func (a *Agent) newHCLog(name string) hclog.Logger {
	return &hclogAdapter{base: a.log, l: a.log, name: name, limit: a.logLimit}
}

// joinHint classifies a join error for the log.
func joinHint(err error) string {
	if err == nil {
		return ""
	}
	lower := strings.ToLower(err.Error())
	for _, h := range keyMismatchHints {
		if strings.Contains(lower, h) {
			return "gossip encryption key mismatch: check cluster.encrypt on every node"
		}
	}
	if strings.Contains(lower, "eof") || strings.Contains(lower, "reset by peer") {
		return "peer closed the connection; a different cluster.encrypt key is a common cause"
	}
	return "seed unreachable or refused: check cluster.join and the seed's cluster.bind/advertise"
}
