package mpi

import (
	"runtime"
	"time"
)

// lockedThread runs functions on one OS thread, the one that called
// MPI_Init_thread, so that the MPI library sees a single calling thread
// whichever goroutine asked. Its zero value is not usable; start one with
// startLockedThread.
type lockedThread struct {
	calls chan call
}

// call is one function for the locked thread and the channel closed once
// it has returned.
type call struct {
	fn   func()
	done chan struct{}
}

// startLockedThread starts the goroutine that serves the calls, locked to
// its OS thread until stop.
func startLockedThread() *lockedThread {
	t := &lockedThread{calls: make(chan call)}
	ready := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		// The goroutine ends still locked, so Go retires the thread with
		// it instead of handing it to other goroutines.
		close(ready)
		for c := range t.calls {
			c.fn()
			close(c.done)
		}
	}()
	<-ready
	return t
}

// do runs fn on the locked thread and returns once it has returned. Calls
// from several goroutines run one after the other.
func (t *lockedThread) do(fn func()) {
	c := call{fn: fn, done: make(chan struct{})}
	t.calls <- c
	<-c.done
}

// tryDo runs fn on the locked thread as do does if the thread takes it
// within wait, and reports whether it did. It returns false without
// running fn when the thread stays busy, so that a caller is never stuck
// behind a call that may not return.
func (t *lockedThread) tryDo(fn func(), wait time.Duration) bool {
	c := call{fn: fn, done: make(chan struct{})}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case t.calls <- c:
		<-c.done
		return true
	case <-timer.C:
		return false
	}
}

// stop ends the goroutine and its thread. No call may follow.
func (t *lockedThread) stop() { close(t.calls) }
