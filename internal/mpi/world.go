package mpi

import (
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"sync"
)

// state is the package's one MPI session. Collectives hold mu for reading
// while they run; Init and Finalize hold it for writing, so that Finalize
// waits for the collectives in flight and no collective starts after it.
var state struct {
	mu        sync.RWMutex
	started   bool // Init was called
	finalized bool // Finalize was called, or Init failed and left MPI stopped
	world     *Comm
	err       error // what Init returned
}

// Init starts MPI and returns the world communicator, every rank of the
// job. Built without MPI (see Enabled), the world is this process alone,
// and Init fails when a launcher such as mpirun started the process as one
// of several ranks, since each would train alone. Built with MPI, Init
// fails when a launcher said several ranks and MPI sees one (the binary
// links another MPI library than the launcher's). Init may be called more
// than once and returns the same world and error each time, but not after
// Finalize: MPI cannot start twice.
func Init() (*Comm, error) {
	state.mu.Lock()
	defer state.mu.Unlock()
	switch {
	case state.finalized && state.err == nil:
		return nil, errors.New("mpi: Init after Finalize (MPI cannot start twice)")
	case state.started:
		return state.world, state.err
	}
	state.started = true
	state.world, state.err = startWorld()
	if state.err != nil {
		state.finalized = true
	}
	return state.world, state.err
}

// Finalize ends MPI on this rank once the collectives in flight have
// returned; it is itself collective, so every rank calls it. Nothing in
// this package works afterwards. Finalize after a failed Init does
// nothing.
func Finalize() error {
	state.mu.Lock()
	defer state.mu.Unlock()
	switch {
	case !state.started:
		return errors.New("mpi: Finalize before Init")
	case state.finalized && state.err != nil:
		return nil
	case state.finalized:
		return errors.New("mpi: Finalize called twice")
	}
	state.finalized = true
	return stopWorld()
}

// Abort ends every rank of the job, this one included, with exit code
// code (MPI_Abort on the world), and does not return. A rank that fails
// must call it: a rank that merely exits leaves the others waiting in
// their next collective unless the launcher notices (mpirun does; not
// every launcher does). Abort is safe from any goroutine, even while
// another one is blocked in a collective that will never complete. Before
// Init, after Finalize, or built without MPI, it exits this process with
// code.
func Abort(code int) {
	abortWorld(code)
	os.Exit(code)
}

// AbortOnPanic, deferred at the top of main and of every goroutine that
// may panic while the job runs, prints the panic and its stack to stderr
// as Go does and aborts the whole job with code 2, Go's exit code for a
// panic. Without it, a panic ends this rank only, and the other ranks wait
// for it unless the launcher notices.
func AbortOnPanic() {
	r := recover()
	if r == nil {
		return
	}
	fmt.Fprintf(os.Stderr, "panic: %v\n\n%s", r, debug.Stack())
	Abort(2)
}
