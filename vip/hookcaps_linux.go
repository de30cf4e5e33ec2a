package vip

import (
	"errors"
	"os/exec"
	"sync"
)

// setprivPath is found once: util-linux's setpriv (Essential in Debian,
// part of util-linux in RPM distributions too).
var setprivPath = sync.OnceValues(func() (string, error) { return exec.LookPath("setpriv") })

// hookArgv is the command line of a hook. Without keepCaps the shell runs
// under setpriv with empty inheritable and ambient capability sets, so a
// non-root agent's CAP_NET_ADMIN/CAP_NET_RAW do not pass to the hook (an
// exec keeps ambient capabilities, and Go cannot drop them between fork and
// exec). Without setpriv the hook is not run: failing closed, with an error
// that names the way out.
func hookArgv(keepCaps bool, command string) ([]string, error) {
	if keepCaps {
		return []string{"/bin/sh", "-c", command}, nil
	}
	setpriv, err := setprivPath()
	if err != nil {
		return nil, errors.New("setpriv (util-linux) not found: it drops the agent's capabilities for hooks; install util-linux, or set vip.hook_capabilities: true to run hooks with them")
	}
	return []string{setpriv, "--inh-caps=-all", "--ambient-caps=-all", "--", "/bin/sh", "-c", command}, nil
}
