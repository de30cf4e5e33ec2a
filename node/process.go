package node

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"github.com/redhaven/redhaven/webui"
)

// processInfo describes this process for the page and the API: memory,
// file descriptors against their limit, CPU time, goroutines. What /proc
// does not give (another OS) stays 0.
func processInfo() webui.Process {
	p := webui.Process{PID: os.Getpid(), Goroutines: runtime.NumGoroutine(), GOMAXPROCS: runtime.GOMAXPROCS(0), GoVersion: runtime.Version()}
	if b, err := os.ReadFile("/proc/self/statm"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 1 {
			if pages, err := strconv.ParseUint(f[1], 10, 64); err == nil {
				p.RSSBytes = pages * uint64(os.Getpagesize())
			}
		}
	}
	if fds, err := os.ReadDir("/proc/self/fd"); err == nil {
		p.OpenFDs = len(fds) - 1 // the directory being read is one
	}
	var lim syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim) == nil {
		p.MaxFDs = lim.Cur
	}
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		p.CPUSeconds = float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
	}
	return p
}
