package webui

import "golang.org/x/sys/unix"

// bcryptNice is the bcrypt thread's nice value: a tenth of a normal
// thread's CPU share when they compete for a core (weight 110 against
// 1024), so the proxy's and Redis's threads preempt it on wake-up, yet a
// login on a host whose every core is busy takes about ten times its CPU
// time, not hundreds (SCHED_IDLE, weight 3, made a 0.5 s comparison take
// 1-6 s at load 15 here).
const bcryptNice = 10

// setThreadLowPriority lowers the calling thread's priority to
// bcryptNice (allowed without privileges: it only lowers it; on Linux
// setpriority with a thread id acts on that thread alone).
func setThreadLowPriority() error {
	return unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), bcryptNice)
}
