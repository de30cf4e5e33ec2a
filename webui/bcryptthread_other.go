//go:build !linux

package webui

import "errors"

func setThreadLowPriority() error { return errors.New("no per-thread priority on this OS") }
