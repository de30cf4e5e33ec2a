package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// supervise runs a command the way the packaged systemd unit runs the
// agent (Type=notify, NotifyAccess=all, Restart=on-failure, RestartSec=1),
// for node containers that have no systemd:
//
//	writer supervise -pidfile /run/e2e-agent.pid -log /var/log/e2e-agent.log -- redhaven agent -c ...
//
// It is a child subreaper, so the process that a hand-over restart starts
// (a grandchild) is reaped here when it ends; the main PID follows the
// MAINPID= the service sends on NOTIFY_SOCKET and is kept in -pidfile. A
// main process killed by a signal or ending with a non-zero status is
// started again after 1 s; a clean exit ends the supervisor. SIGTERM to
// the supervisor is passed to the main process (SIGKILL after 15 s) and
// nothing is restarted. Every event goes to -events, one line each.
func cmdSupervise(args []string) error {
	fs := flag.NewFlagSet("supervise", flag.ExitOnError)
	pidfile := fs.String("pidfile", "", "the main PID is kept here")
	logPath := fs.String("log", "", "the service's stdout and stderr are appended here")
	events := fs.String("events", "/var/log/e2e-supervisor.log", "supervisor events, one a line")
	notify := fs.String("notify", "/run/e2e-notify.sock", "NOTIFY_SOCKET path")
	restarts := fs.Int("max-restarts", 100, "give up after this many restarts")
	_ = fs.Parse(args)
	cmdline := fs.Args()
	if *pidfile == "" || *logPath == "" || len(cmdline) == 0 {
		return errors.New("-pidfile, -log and a command after -- are required")
	}
	ev, err := os.OpenFile(*events, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer ev.Close()
	logf := func(format string, a ...any) {
		fmt.Fprintf(ev, "%d %s\n", time.Now().UnixNano(), fmt.Sprintf(format, a...))
	}
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("PR_SET_CHILD_SUBREAPER: %w", err)
	}
	_ = os.Remove(*notify)
	nc, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: *notify, Net: "unixgram"})
	if err != nil {
		return err
	}
	defer nc.Close()
	mainPIDs := make(chan int, 16)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := nc.Read(buf)
			if err != nil {
				return
			}
			msg := strings.ReplaceAll(string(buf[:n]), "\n", " ")
			logf("notify %s", msg)
			for _, f := range strings.Fields(msg) {
				if v, ok := strings.CutPrefix(f, "MAINPID="); ok {
					if pid, err := strconv.Atoi(v); err == nil {
						mainPIDs <- pid
					}
				}
			}
		}
	}()
	out, err := os.OpenFile(*logPath, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer out.Close()

	mainPID := 0
	setMain := func(pid int) {
		mainPID = pid
		_ = os.WriteFile(*pidfile, []byte(strconv.Itoa(pid)+"\n"), 0o644)
	}
	start := func() error {
		cmd := exec.Command(cmdline[0], cmdline[1:]...)
		cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+*notify)
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			return err
		}
		setMain(cmd.Process.Pid)
		logf("started %d", mainPID)
		return nil // reaped by the Wait4 loop below, not by cmd.Wait
	}
	if err := start(); err != nil {
		return err
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	stopping := false
	var killAt time.Time
	for n := 0; ; {
		select {
		case <-stop:
			if !stopping {
				stopping = true
				killAt = time.Now().Add(15 * time.Second)
				logf("stop: SIGTERM to %d", mainPID)
				_ = syscall.Kill(mainPID, syscall.SIGTERM)
			}
		case pid := <-mainPIDs:
			setMain(pid)
		default:
		}
		if stopping && time.Now().After(killAt) {
			logf("stop: %d still running after 15s, SIGKILL", mainPID)
			_ = syscall.Kill(mainPID, syscall.SIGKILL)
			killAt = time.Now().Add(time.Hour)
		}
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if err != nil && !errors.Is(err, syscall.EINTR) && !errors.Is(err, syscall.ECHILD) {
			return err
		}
		if pid <= 0 {
			time.Sleep(20 * time.Millisecond) // polling: signals and notifications arrive on channels
			continue
		}
		logf("reaped %d: %s", pid, describe(ws))
		if pid != mainPID {
			continue
		}
		// A hand-over: the old main process exits 0 right after the new
		// one said MAINPID=; take that notification before deciding.
		if ws.Exited() && ws.ExitStatus() == 0 && !stopping {
			select {
			case p := <-mainPIDs:
				setMain(p)
				continue
			case <-time.After(500 * time.Millisecond):
			}
		}
		if stopping || (ws.Exited() && ws.ExitStatus() == 0) {
			logf("main process %d ended (%s); not restarted", pid, describe(ws))
			_ = os.Remove(*pidfile)
			return nil
		}
		n++
		if n > *restarts {
			return fmt.Errorf("gave up after %d restarts", n-1)
		}
		time.Sleep(time.Second) // RestartSec=1
		if err := start(); err != nil {
			return err
		}
	}
}

func describe(ws syscall.WaitStatus) string {
	if ws.Signaled() {
		return "killed by " + ws.Signal().String()
	}
	return "exit " + strconv.Itoa(ws.ExitStatus())
}
