package webui

import "golang.org/x/sys/unix"

// setThreadIdle puts the calling thread in the SCHED_IDLE class (allowed
// without privileges: it only lowers the thread's priority).
func setThreadIdle() error {
	return unix.SchedSetAttr(0, &unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_IDLE}, 0)
}
