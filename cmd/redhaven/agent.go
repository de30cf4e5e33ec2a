package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"syscall"
	"time"

	"github.com/redhaven/redhaven/node"
)

// The agent's process life: readiness (systemd Type=notify), SIGINT/SIGTERM
// (stop), SIGUSR2 (hand-over restart: the binary at the same path is
// started again and takes the client connections over, so an upgraded
// binary on disk takes over), SIGHUP (reload: the config is read again,
// log.level applied live, any other change by a hand-over restart).

const (
	// handoverFDEnv names the descriptor of the hand-over socket in the
	// new process's environment.
	handoverFDEnv = "REDHAVEN_HANDOVER_FD"
	// handoverDeadline bounds the wait for sessions to reach a command
	// boundary; the others are closed (and logged).
	handoverDeadline = 3 * time.Second
	// startTimeout bounds the new process's start up to its config check.
	startTimeout = 30 * time.Second
	// readyTimeout bounds the wait for the new process to serve.
	readyTimeout = 60 * time.Second
)

// agentProc is a running agent process.
type agentProc struct {
	args []string // the agent's command-line arguments, for the new process of a hand-over
	// loadConfig loads the config again as at start (flags, file,
	// environment) and validates it, for a reload.
	loadConfig func() (node.Config, error)
	cfg        node.Config
	logger     *slog.Logger
	level      *slog.LevelVar
	exe        string // the binary's path, resolved at start
	exeID      fileID
	ho         *net.UnixConn // the hand-over socket from the previous process, nil on a plain start
}

// fileID tells a replaced file from the one that was there.
type fileID struct {
	dev, ino  uint64
	size      int64
	mtimeNano int64
}

func statID(path string) fileID {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return fileID{}
	}
	return fileID{dev: uint64(st.Dev), ino: st.Ino, size: st.Size, mtimeNano: st.Mtim.Nano()}
}

// takeHandoverSocket returns the hand-over socket the previous process
// passed, nil if none, and removes its variable from the environment
// (which the config loader reads).
func takeHandoverSocket() (*net.UnixConn, error) {
	v, ok := os.LookupEnv(handoverFDEnv)
	if !ok {
		return nil, nil
	}
	_ = os.Unsetenv(handoverFDEnv)
	fd, err := strconv.Atoi(v)
	if err != nil || fd < 3 {
		return nil, fmt.Errorf("%s=%q: not a descriptor", handoverFDEnv, v)
	}
	f := os.NewFile(uintptr(fd), "handover")
	defer f.Close()
	c, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", handoverFDEnv, err)
	}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		c.Close()
		return nil, fmt.Errorf("%s: not a Unix socket", handoverFDEnv)
	}
	return uc, nil
}

// handoverMsg is a control message between the two processes.
type handoverMsg struct {
	PID   int    `json:"pid,omitempty"`
	Ready bool   `json:"ready,omitempty"`
	Error string `json:"error,omitempty"`
	// Restart: the new process cannot take a hand-over (a release
	// before several services could not, with several); the old one
	// restarts instead.
	Restart bool `json:"restart,omitempty"`
}

func sendMsg(c *net.UnixConn, m handoverMsg) error {
	b, _ := json.Marshal(m)
	_, err := c.Write(b)
	return err
}

func readMsg(c *net.UnixConn, timeout time.Duration) (handoverMsg, error) {
	var m handoverMsg
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	defer c.SetReadDeadline(time.Time{})
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil {
		return m, err
	}
	if n == 0 {
		return m, io.EOF
	}
	return m, json.Unmarshal(buf[:n], &m)
}

// serve runs the agent until it stops or hands over; it returns the exit
// status.
func (p *agentProc) serve(stderr io.Writer) int {
	// First: by default SIGHUP and SIGUSR2 would end the process. Signals
	// that come during the start wait here.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGUSR2)
	defer signal.Stop(sigs)
	var in *node.Inherited
	if p.ho != nil {
		defer p.ho.Close()
		if err := sendMsg(p.ho, handoverMsg{PID: os.Getpid()}); err != nil {
			fmt.Fprintf(stderr, "redhaven agent: hand-over: %v\n", err)
			return 1
		}
		var err error
		if in, err = node.ReceiveInherited(p.ho); err != nil {
			p.logger.Error("hand-over: nothing received from the previous process", "err", err)
			return 1
		}
		listeners, sessions := in.Counts()
		p.logger.Info("hand-over: taking over", "pid", os.Getpid(), "services", len(in.Services), "sessions", sessions,
			"listeners", listeners)
	}
	n, err := node.NewInherited(p.cfg, p.logger, in)
	if err != nil {
		if p.ho != nil {
			_ = sendMsg(p.ho, handoverMsg{Error: err.Error()})
		}
		fmt.Fprintf(stderr, "redhaven agent: %s\n", indentErr(err))
		return 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	sdNotify(fmt.Sprintf("READY=1\nMAINPID=%d", os.Getpid()))
	p.logger.Info("agent ready", "pid", os.Getpid())
	if p.ho != nil {
		_ = sendMsg(p.ho, handoverMsg{Ready: true})
		_ = p.ho.Close()
		p.ho = nil
	}
	for {
		select {
		case err := <-done:
			if err != nil {
				p.logger.Error("agent failed", "err", err)
				return 1
			}
			return 0
		case sig := <-sigs:
			switch sig {
			case syscall.SIGINT, syscall.SIGTERM:
				signal.Reset(syscall.SIGINT, syscall.SIGTERM) // a second one kills the default way
				sdNotify("STOPPING=1")
				p.logger.Info("stopping", "signal", sig.String(), "exit_after", stopDeadline)
				watchdog := time.AfterFunc(stopDeadline, func() { stuckExit(p.logger, stderr, stopDeadline) })
				defer watchdog.Stop()
				stopping := time.Now()
				cancel()
				if err := <-done; err != nil {
					p.logger.Error("agent failed", "err", err)
					return 1
				}
				p.logger.Info("agent exits", "stop_took", time.Since(stopping).Round(time.Millisecond))
				return 0
			case syscall.SIGUSR2:
				if code, exit := p.handOver(n, cancel, done, "SIGUSR2"); exit {
					return code
				}
			case syscall.SIGHUP:
				if code, exit := p.reload(n, cancel, done); exit {
					return code
				}
			}
		}
	}
}

// stopDeadline is the last resort of a stop: every step of it is bounded
// (node.Run, cluster.Agent.Run), so an agent still running this long
// after SIGTERM hangs somewhere unforeseen. It exits rather than wait for
// systemd's SIGKILL (TimeoutStopSec=30 in packaging/redhaven.service),
// with every goroutine's stack in its log to say where.
const stopDeadline = 25 * time.Second

// exitStuck is the exit status of a stop that overran stopDeadline.
const exitStuck = 3

// stuckExit logs the overrun, writes every goroutine's stack to w (the
// log's stream) and exits the process with exitStuck.
func stuckExit(logger *slog.Logger, w io.Writer, after time.Duration) {
	logger.Error("stop did not finish; exiting with every goroutine's stack below", "after", after, "status", exitStuck)
	var buf []byte
	for size := 1 << 20; ; size *= 2 { // up to 64 MiB, cut beyond
		buf = make([]byte, size)
		if n := runtime.Stack(buf, true); n < size || size >= 64<<20 {
			buf = buf[:n]
			break
		}
	}
	fmt.Fprintf(w, "goroutine stacks of the stuck stop:\n%s\n", buf)
	os.Exit(exitStuck)
}

// reload reads the config again and applies it: live where it can
// (node.LiveKeys), by a hand-over restart otherwise.
func (p *agentProc) reload(n *node.Node, cancel context.CancelFunc, done <-chan error) (code int, exit bool) {
	cfg, err := p.loadConfig()
	if err != nil {
		p.logger.Error("reload: the config is not valid; nothing changed", "err", err)
		return 0, false
	}
	live, restart := node.SplitReload(node.ChangedKeys(p.cfg, cfg))
	if id := statID(p.exe); id != p.exeID {
		restart = append(restart, "binary "+p.exe)
	}
	p.level.Set(node.ParseLevel(cfg.Log.Level))
	n.ApplyLive(cfg)
	_ = n.ReloadTLS() // proxy.tls and redis.tls files, read again (it logs the outcome)
	if len(restart) == 0 {
		p.cfg = cfg
		p.logger.Info("reload: applied live", "keys", live)
		return 0, false
	}
	p.logger.Info("reload: these keys cannot change live; hand-over restart", "keys", restart, "live", live)
	return p.handOver(n, cancel, done, "reload")
}

// handOver starts the agent's binary again and hands it the client
// connections of every service. exit: this process is done (code is its
// status); otherwise the new process failed before anything was handed
// over and this one goes on serving.
//
// A new process that refuses the hand-over (an older binary, put back by
// a downgrade, with several services) makes this one stop instead and exit
// with exitRestart, so that systemd starts it again with the config on
// disk: a plain restart, client connections closed.
func (p *agentProc) handOver(n *node.Node, cancel context.CancelFunc, done <-chan error, why string) (code int, exit bool) {
	start := time.Now()
	log := p.logger.With("reason", why)
	restart := func(err error) (int, bool) {
		log.Warn("hand-over refused; restarting instead: the agent stops and exits with status 75 for its supervisor (systemd Restart=on-failure) to start it again; client connections are closed",
			"why", err)
		sdNotify("STOPPING=1")
		cancel()
		if err := <-done; err != nil {
			log.Warn("the agent stopped with an error", "err", err)
		}
		return exitRestart, true
	}
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_SEQPACKET|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		log.Error("hand-over: no socket; going on", "err", err)
		return 0, false
	}
	mine, theirs := os.NewFile(uintptr(fds[0]), "handover"), os.NewFile(uintptr(fds[1]), "handover-child")
	fc, err := net.FileConn(mine)
	mine.Close()
	if err != nil {
		theirs.Close()
		log.Error("hand-over: no socket; going on", "err", err)
		return 0, false
	}
	c := fc.(*net.UnixConn)
	defer c.Close()
	cmd := exec.Command(p.exe, append([]string{"agent"}, p.args...)...)
	cmd.Env = append(os.Environ(), handoverFDEnv+"=3")
	cmd.ExtraFiles = []*os.File{theirs}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		theirs.Close()
		log.Error("hand-over: cannot start the new process; going on", "binary", p.exe, "err", err)
		return 0, false
	}
	theirs.Close()
	go func() { _ = cmd.Wait() }() // reaped if it fails; once this process exits, it is not our child anymore
	log.Info("hand-over: new process started", "binary", p.exe, "pid", cmd.Process.Pid)
	hello, err := readMsg(c, startTimeout)
	if err == nil && hello.Restart {
		return restart(errors.New(hello.Error))
	}
	if err != nil || hello.PID == 0 {
		_ = cmd.Process.Kill()
		log.Error("hand-over: the new process did not start (see its log above); going on", "err", err)
		return 0, false
	}
	sdNotify("RELOADING=1")
	n.PrepareHandOver() // while still serving: a leader hands leadership over first
	paused := time.Now()
	in, err := n.HandOver(time.Now().Add(handoverDeadline))
	if err != nil {
		_ = cmd.Process.Kill()
		log.Error("hand-over: cannot hand over; going on", "err", err)
		sdNotify("READY=1")
		return 0, false
	}
	defer in.Close()
	stopping := time.Now()
	cancel() // stops the rest (without leaving the cluster): frees the ports and the Raft store
	select {
	case err := <-done:
		if err != nil {
			log.Warn("hand-over: the agent stopped with an error", "err", err)
		}
	case <-time.After(30 * time.Second):
		log.Error("hand-over: the agent did not stop within 30s; handing over anyway")
	}
	if err := node.SendInherited(c, in); err != nil {
		log.Error("hand-over failed: the client connections are lost", "err", err)
		return 1, true
	}
	in.Close() // the new process holds them now
	stopped := time.Since(stopping)
	ready, err := readMsg(c, readyTimeout)
	if err != nil || !ready.Ready {
		if ready.Error != "" {
			err = errors.New(ready.Error)
		}
		log.Error("hand-over: the new process failed to take over", "pid", cmd.Process.Pid, "err", err)
		return 1, true
	}
	_, sessions := in.Counts()
	log.Info("hand-over done; this process exits", "new_pid", cmd.Process.Pid, "services", len(in.Services), "sessions", sessions,
		"stop_took", stopped.Round(time.Millisecond), "clients_paused", time.Since(paused).Round(time.Millisecond),
		"took", time.Since(start).Round(time.Millisecond))
	return 0, true
}

// sdNotify sends a state to systemd (Type=notify) when run by it.
func sdNotify(state string) {
	addr := os.Getenv("NOTIFY_SOCKET")
	if addr == "" {
		return
	}
	if addr[0] == '@' {
		addr = "\x00" + addr[1:]
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		return
	}
	defer c.Close()
	_, _ = c.Write([]byte(state))
}
