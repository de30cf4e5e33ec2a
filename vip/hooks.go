package vip

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// Hook events, the value of REDHAVEN_VIP_EVENT.
const (
	eventAcquire = "acquire"
	eventRelease = "release"
)

// maxHookOutput bounds the hook output kept for the log.
const maxHookOutput = 4096

// hookRunner runs on_acquire / on_release one at a time, in the order the
// events happened, off Run's loop so that a slow hook never delays
// adding or removing the address.
type hookRunner struct {
	cfg    Config
	prefix netip.Prefix
	logger *slog.Logger

	mu      sync.Mutex
	queue   []string
	stopped bool
	wake    chan struct{} // cap 1
}

func newHookRunner(cfg Config, prefix netip.Prefix, logger *slog.Logger) *hookRunner {
	return &hookRunner{cfg: cfg, prefix: prefix, logger: logger, wake: make(chan struct{}, 1)}
}

// enqueue schedules the hook for event, if one is configured.
func (h *hookRunner) enqueue(event string) {
	if h.command(event) == "" {
		return
	}
	h.mu.Lock()
	h.queue = append(h.queue, event)
	h.mu.Unlock()
	h.poke()
}

// stop makes run return once the queued hooks have run.
func (h *hookRunner) stop() {
	h.mu.Lock()
	h.stopped = true
	h.mu.Unlock()
	h.poke()
}

func (h *hookRunner) poke() {
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

// run executes queued hooks until stop; each is bounded by hook_timeout,
// so a stop waits at most that long per queued hook.
func (h *hookRunner) run() {
	for {
		h.mu.Lock()
		if len(h.queue) == 0 {
			stopped := h.stopped
			h.mu.Unlock()
			if stopped {
				return
			}
			<-h.wake
			continue
		}
		event := h.queue[0]
		h.queue = h.queue[1:]
		h.mu.Unlock()
		h.exec(event)
	}
}

func (h *hookRunner) command(event string) string {
	if event == eventAcquire {
		return h.cfg.OnAcquire
	}
	return h.cfg.OnRelease
}

// exec runs one hook with `sh -c` (see hookArgv) and logs its outcome and output.
func (h *hookRunner) exec(event string) {
	command := h.command(event)
	ctx, cancel := context.WithTimeout(context.Background(), h.cfg.HookTimeout)
	defer cancel()
	argv, err := hookArgv(h.cfg.HookCapabilities, command)
	if err != nil {
		h.logger.Warn("vip hook not run", "event", event, "command", command, "err", err)
		return
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(hookEnviron(os.Environ()),
		"REDHAVEN_VIP_ADDRESS="+h.prefix.Addr().String(),
		"REDHAVEN_VIP_PREFIX="+h.prefix.String(),
		"REDHAVEN_VIP_INTERFACE="+h.cfg.Interface,
		"REDHAVEN_VIP_EVENT="+event,
	)
	var out limitedBuffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	// Kill the whole process group on timeout, and do not wait forever
	// for grandchildren that keep the output pipe open.
	setProcessGroup(cmd)
	cmd.WaitDelay = time.Second
	start := time.Now()
	err = cmd.Run()
	attrs := []any{
		"event", event, "command", command, "duration", time.Since(start).Round(time.Millisecond),
		"output", strings.TrimSpace(out.String()),
	}
	switch {
	case ctx.Err() != nil:
		h.logger.Warn("vip hook timed out and was killed", append(attrs, "hook_timeout", h.cfg.HookTimeout)...)
	case err != nil:
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			attrs = append(attrs, "exit_code", exit.ExitCode())
		}
		h.logger.Warn("vip hook failed", append(attrs, "err", err)...)
	default:
		h.logger.Info("vip hook done", attrs...)
	}
}

// hookEnviron is the agent's environment without its REDHAVEN_*
// variables: those are configuration (passwords among them), not for hooks.
func hookEnviron(env []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		if !strings.HasPrefix(kv, "REDHAVEN_") {
			out = append(out, kv)
		}
	}
	return out
}

// limitedBuffer keeps the first maxHookOutput bytes written to it.
type limitedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	cut bool
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if room := maxHookOutput - b.buf.Len(); room < len(p) {
		b.buf.Write(p[:max(room, 0)])
		b.cut = true
	} else {
		b.buf.Write(p)
	}
	return len(p), nil
}

func (b *limitedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cut {
		return b.buf.String() + " [output cut]"
	}
	return b.buf.String()
}
