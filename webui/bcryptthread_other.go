//go:build !linux

package webui

import "errors"

func setThreadIdle() error { return errors.New("no SCHED_IDLE on this OS") }
