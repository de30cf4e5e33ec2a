package proxy

import (
	"sync"
	"sync/atomic"
)

// clientOutput is the only owner of "never block on the client": a client
// may write a long pipeline before it reads a reply, so neither the
// session goroutine nor a shared backend connection's reader may ever wait
// for the client's socket (the session would stop reading the client: a
// deadlock; the shared reader would stall every session on it).
//
// Replies and the proxy's own answers are appended to pend, in FIFO
// order, under the owner's lock (the session's mu), without waiting for
// the writer. Whoever holds wmu moves pend to out and writes it; wmu is
// never waited for on those paths (TryLock): when it is busy, its holder
// writes what was appended meanwhile before it lets go (unlock). A write
// that would block leaves the rest in out, in order, to a flusher
// goroutine started only then. Only a dedicated backend connection's
// reader (Redis keeps reading our commands meanwhile) and the flusher
// write with blocking.
type clientOutput struct {
	wmu sync.Mutex
	out []byte // being written, under wmu

	// pend is output not yet handed to the writer (under the owner's
	// lock). A multiplexed connection's reader appends here without
	// waiting for wmu, so a client that does not read never stalls the
	// shared connection.
	pend []byte
	// localsWaiting: answers were queued (under the owner's lock); whoever
	// holds wmu collects and writes them
	localsWaiting bool

	// finNext: once out is written, nothing more is owed and nothing
	// more is read (a drain, drain.go): the write side closes right
	// after the last reply (under wmu, set by readyLocked)
	finNext bool

	outPending atomic.Bool  // out holds bytes a non-blocking write left
	outBacklog atomic.Int64 // len(out) after the last write
	flushing   atomic.Bool  // a flusher goroutine is writing them
}

// outputOwner is what the output needs from its session.
type outputOwner interface {
	sync.Locker // the lock pend and localsWaiting are under
	// readyLocked appends to pend the answers now due (owner's lock and
	// wmu held) and says whether the client is to be closed.
	readyLocked(collect bool) (closing bool)
	// writeClient writes to the client, waiting or not; it counts the
	// bytes and ends the session when the write fails.
	writeClient(p []byte, block bool) (int, error)
	closeWrite(before bool) // around the last reply's write (finNext)
	kick()                  // wake the session goroutine
	spawn(f func())         // run f in a goroutine the session waits for
	isClosed() bool
}

// emit hands the answers queued since to the writer without waiting:
// written now if wmu is free, else by its holder.
func (o *clientOutput) emit(w outputOwner) {
	w.Lock()
	o.localsWaiting = true
	w.Unlock()
	if o.wmu.TryLock() {
		o.release(w)
	}
}

// deliver, after replies were appended to pend (localsWaiting set): as
// emit, and if wmu is busy make sure a stuck write goes on.
func (o *clientOutput) deliver(w outputOwner) {
	if o.wmu.TryLock() {
		o.release(w)
	} else if o.outPending.Load() {
		o.startFlusher(w)
	}
}

// release releases wmu without waiting for the client: what became
// pending is written as far as the socket takes it now, the rest by the
// flusher goroutine.
func (o *clientOutput) release(w outputOwner) {
	o.unlock(w, false)
	if o.outPending.Load() {
		o.startFlusher(w)
	}
}

// startFlusher writes out what a non-blocking write left, in its own
// goroutine (only while a client does not read).
func (o *clientOutput) startFlusher(w outputOwner) {
	if !o.flushing.CompareAndSwap(false, true) {
		return
	}
	w.spawn(func() {
		for {
			o.wmu.Lock()
			o.unlock(w, true)
			o.flushing.Store(false)
			if !o.outPending.Load() || w.isClosed() || !o.flushing.CompareAndSwap(false, true) {
				return
			}
		}
	})
}

// unlock releases wmu (held), first writing what became due meanwhile.
// Without block the write only takes what the socket accepts now; the
// rest stays in out, in order.
func (o *clientOutput) unlock(w outputOwner, block bool) {
	for {
		w.Lock()
		collect := o.localsWaiting
		o.localsWaiting = false
		closing := w.readyLocked(collect)
		o.takePendLocked()
		w.Unlock()
		o.write(w, block)
		o.wmu.Unlock()
		if closing {
			w.kick()
		}
		w.Lock()
		again := o.localsWaiting
		w.Unlock()
		if !again || !o.wmu.TryLock() {
			return
		}
	}
}

// write writes out (wmu held).
func (o *clientOutput) write(w outputOwner, block bool) {
	if len(o.out) == 0 {
		return
	}
	if block {
		o.outBacklog.Store(int64(len(o.out))) // while it waits for the client (budget.go)
	}
	if o.finNext {
		w.closeWrite(true)
	}
	n, err := w.writeClient(o.out, block)
	switch {
	case n < len(o.out) && err == nil:
		rest := copy(o.out, o.out[n:])
		o.out = o.out[:rest]
		o.outPending.Store(true)
		o.outBacklog.Store(int64(rest))
		return
	case cap(o.out) > keepBufMax:
		o.out = nil
	default:
		o.out = o.out[:0]
	}
	o.outPending.Store(false)
	o.outBacklog.Store(0)
	if o.finNext {
		w.closeWrite(false)
	}
}

// takePendLocked moves pend to out (wmu and the owner's lock held);
// without a copy in the usual case, out being empty.
func (o *clientOutput) takePendLocked() {
	if len(o.pend) == 0 {
		return
	}
	if len(o.out) == 0 {
		o.out, o.pend = o.pend, o.out[:0]
	} else {
		o.out = append(o.out, o.pend...)
		o.pend = o.pend[:0]
	}
	if cap(o.pend) > keepBufMax {
		o.pend = nil
	}
}

// idle says whether nothing is waiting to be written (owner's lock held).
func (o *clientOutput) idle() bool {
	return len(o.pend) == 0 && len(o.out) == 0 && !o.outPending.Load() && !o.localsWaiting && !o.flushing.Load()
}
