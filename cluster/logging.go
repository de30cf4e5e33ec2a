package cluster

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"strings"

	"github.com/hashicorp/go-hclog"
)

// hclogAdapter sends raft's hclog output to slog.
type hclogAdapter struct {
	base *slog.Logger // without the lib attribute
	l    *slog.Logger
	name string
	args []any
}

func newHCLog(l *slog.Logger, name string) hclog.Logger {
	return &hclogAdapter{base: l, l: l, name: name}
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
	if !h.l.Enabled(ctx, lv) {
		return
	}
	all := make([]any, 0, len(h.args)+len(args))
	all = append(all, h.args...)
	for _, v := range args {
		if f, ok := v.(hclog.Format); ok && len(f) > 0 {
			if s, ok := f[0].(string); ok {
				v = fmt.Sprintf(s, f[1:]...)
			}
		}
		all = append(all, v)
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
	w.l.Log(context.Background(), lv, "memberlist", "detail", s)
}

// newStdLogger returns a *log.Logger for memberlist.
func newStdLogger(l *slog.Logger) *log.Logger {
	return log.New(&stdWriter{l: l}, "", 0)
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
