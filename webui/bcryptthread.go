package webui

import (
	"runtime"
	"sync"

	"golang.org/x/crypto/bcrypt"
)

// A bcrypt comparison costs tens of milliseconds of CPU. The agent usually
// has one P (GOMAXPROCS 1, see cmd/redhaven) and shares its core with Redis:
// a bcrypt on that P makes the proxy's goroutines wait for it, and its
// thread makes Redis wait for the kernel's time slice. So every comparison
// the password checker runs goes to one goroutine locked to its own OS
// thread (threadCompare):
//   - that thread runs at nice 10 (bcryptNice, Linux): another thread that
//     wakes up on its core, the proxy's or Redis's, preempts it, and it
//     gets a tenth of a core it must share (on a host whose every core is
//     busy, a login takes about ten times its CPU time);
//   - while it compares, GOMAXPROCS is one more than before (restored
//     after): the proxy's goroutines keep their P and the runtime's network
//     poller, instead of waiting for bcrypt's slices. Changing GOMAXPROCS
//     stops the world for microseconds, twice per comparison; the password
//     checker runs at most one comparison at a time, and few (its limits).
//
// Where the thread's priority cannot be lowered (another OS, a sandbox that
// forbids it), it runs yieldingCompare at the normal priority instead.
type bcryptThread struct {
	jobs chan bcryptJob
	low  bool // the thread's priority is lowered (bcryptNice)
}

type bcryptJob struct {
	f    func(idle bool) error
	done chan error
}

// theBcryptThread starts on first use and lives as long as the process
// (its goroutine never returns, so the low-priority thread never serves
// another goroutine).
var theBcryptThread = sync.OnceValue(func() *bcryptThread {
	t := &bcryptThread{jobs: make(chan bcryptJob)}
	ready := make(chan bool)
	go func() {
		runtime.LockOSThread() // never unlocked
		ready <- setThreadLowPriority() == nil
		for j := range t.jobs {
			j.done <- t.run(j.f)
		}
	}()
	t.low = <-ready
	return t
})

// threadCompare is bcrypt.CompareHashAndPassword on the bcrypt thread.
func threadCompare(hash, pw []byte) error {
	return onBcryptThread(func(idle bool) error {
		if idle {
			return bcrypt.CompareHashAndPassword(hash, pw)
		}
		return yieldingCompare(hash, pw)
	})
}

// onBcryptThread runs f on the bcrypt thread and returns its error; f is
// told whether the thread's priority is lowered.
func onBcryptThread(f func(idle bool) error) error {
	done := make(chan error, 1)
	theBcryptThread().jobs <- bcryptJob{f: f, done: done}
	return <-done
}

// run runs f with one more P than the process had.
func (t *bcryptThread) run(f func(idle bool) error) error {
	n := runtime.GOMAXPROCS(0)
	runtime.GOMAXPROCS(n + 1)
	defer func() {
		if runtime.GOMAXPROCS(0) == n+1 { // unless someone else changed it meanwhile
			runtime.GOMAXPROCS(n)
		}
	}()
	return f(t.low)
}
