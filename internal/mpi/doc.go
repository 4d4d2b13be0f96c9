// Package mpi is peftonnx's own thin binding to MPI (the Message Passing
// Interface), for training across processes and machines: the world of
// ranks a launcher such as mpirun starts, their rank and size on the
// world and on this machine, sub-communicators (MPI_Comm_split) for
// tensor- and data-parallel groups, and the collectives that training
// needs: in-place all-reduce sums of float32 and float64, broadcasts of
// bytes and float32, an all-gather of float32, and a barrier. Abort ends
// the whole job.
//
// # Builds
//
// The binding needs cgo and Open MPI's library and headers (Debian:
// libopenmpi-dev; pkg-config finds them as ompi-c), and is compiled only
// with the mpi build tag; "make build" adds the tag wherever Open MPI is
// installed. The default build has no MPI: its world is this process
// alone (rank 0 of 1), its collectives leave the data as it is, and Init
// fails with an error saying to build with MPI when a launcher started
// the process as one of several ranks (Open MPI's OMPI_COMM_WORLD_SIZE,
// PMI_SIZE, PMIX_RANK). Enabled says which build this is.
//
// # Threads
//
// Init starts MPI with MPI_Init_thread at MPI_THREAD_FUNNELED on a
// goroutine locked to its OS thread, and every later MPI call runs on that
// thread: callers from any goroutine are safe, and MPI sees one thread.
// Only Abort may call MPI from another thread, when that one stays busy.
//
// # Failures
//
// The communicators are set to MPI_ERRORS_RETURN: a failing MPI call
// returns an *Error with MPI's own message instead of ending the process.
// A rank that fails must end the job rather than exit alone: a collective
// waits for every rank, so the others would wait for it forever unless the
// launcher notices (mpirun does when a rank exits non-zero; not every
// launcher does). Call Abort(code) on every error path that would exit
// (log.Fatal, os.Exit with a non-zero code), and defer AbortOnPanic at the
// top of main and of each goroutine that may panic. An error from a
// collective usually means the other ranks are stuck in it, so it too
// calls for Abort.
//
// # Limits
//
//   - Every rank of a communicator must call its collectives in the same
//     order with matching lengths and roots; MPI cannot check that, and a
//     mismatch hangs or corrupts. Since every call blocks the one MPI
//     thread, this holds across communicators too: two goroutines that each
//     drive their own communicator can deadlock (rank 0's thread waiting in
//     one while rank 1's waits in the other), so a rank issues all its
//     collectives from one sequence of steps.
//   - Collectives block; there are no non-blocking ones to overlap with
//     computation, and no point-to-point messages.
//   - Buffers are passed to MPI as they are (no copy), except all-gathers
//     larger than one MPI call (2^26 elements), which go through a scratch
//     buffer. Larger buffers are sent in calls of at most 2^26 elements.
//   - Written for and tested with Open MPI 4.1 (Debian 12); other MPI
//     libraries are untested, and the build looks only for Open MPI.
//   - MPI starts once per process: Init after Finalize is an error.
//   - Open MPI 4.1's mpirun sometimes loses its "MPI_ABORT was invoked"
//     report, when the aborting rank dies before the report is through;
//     the job still ends with the code given to Abort. Print the reason
//     before calling Abort.
package mpi
