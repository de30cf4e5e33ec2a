//go:build !unix

package vip

import "os/exec"

// setProcessGroup is a no-op where process groups do not exist; the
// timeout kills the shell only.
func setProcessGroup(*exec.Cmd) {}
