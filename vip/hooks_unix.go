//go:build unix

package vip

import (
	"os/exec"
	"syscall"
)

// setProcessGroup starts the hook in its own process group and makes the
// timeout kill the whole group, not only the shell.
func setProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}
