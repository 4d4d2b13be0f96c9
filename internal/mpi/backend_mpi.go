//go:build mpi

package mpi

/*
#cgo pkg-config: ompi-c
#include <mpi.h>

// The handles and constants that mpi.h defines as macros over the
// library's globals, which Go cannot name itself.
static MPI_Comm peft_comm_world(void) { return MPI_COMM_WORLD; }
static int peft_comm_is_null(MPI_Comm c) { return c == MPI_COMM_NULL; }
static int peft_errors_return(MPI_Comm c) { return MPI_Comm_set_errhandler(c, MPI_ERRORS_RETURN); }

static int peft_init(int *provided) {
	return MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, provided);
}
static int peft_split_shared(MPI_Comm c, MPI_Comm *out) {
	return MPI_Comm_split_type(c, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, out);
}
static int peft_allreduce_sum_float(void *buf, int n, MPI_Comm c) {
	return MPI_Allreduce(MPI_IN_PLACE, buf, n, MPI_FLOAT, MPI_SUM, c);
}
static int peft_allreduce_sum_double(void *buf, int n, MPI_Comm c) {
	return MPI_Allreduce(MPI_IN_PLACE, buf, n, MPI_DOUBLE, MPI_SUM, c);
}
static int peft_bcast_bytes(void *buf, int n, int root, MPI_Comm c) {
	return MPI_Bcast(buf, n, MPI_BYTE, root, c);
}
static int peft_bcast_float(void *buf, int n, int root, MPI_Comm c) {
	return MPI_Bcast(buf, n, MPI_FLOAT, root, c);
}
static int peft_allgather_float(const void *send, void *recv, int n, MPI_Comm c) {
	return MPI_Allgather(send, n, MPI_FLOAT, recv, n, MPI_FLOAT, c);
}
static int peft_abort(int code) { return MPI_Abort(MPI_COMM_WORLD, code); }
*/
import "C"

import (
	"fmt"
	"os"
	"sync/atomic"
	"time"
	"unsafe"
)

// Enabled reports whether this binary was built with MPI (the mpi build
// tag). Without it, the world is this process alone.
const Enabled = true

// handle is the MPI communicator behind a Comm.
type handle = C.MPI_Comm

// thread is the locked OS thread that initialized MPI and makes every MPI
// call; nil before Init and after Finalize. Abort reads it without the
// state lock, which a blocked collective may hold.
var thread atomic.Pointer[lockedThread]

// chunkElems is the most elements one MPI call carries: MPI counts are C
// ints, and some transports handle messages over 2 GiB poorly. Tests
// lower it to check the chunking.
var chunkElems = 1 << 26

// abortWait is how long Abort waits for the MPI thread to be free before
// it calls MPI_Abort from its own thread.
const abortWait = 100 * time.Millisecond

// startWorld initializes MPI on a new locked thread and returns the world.
func startWorld() (*Comm, error) {
	th := startLockedThread()
	var world *Comm
	var err error
	th.do(func() {
		var provided C.int
		if rc := C.peft_init(&provided); rc != C.MPI_SUCCESS {
			err = callError("MPI_Init_thread", rc)
			return
		}
		if provided < C.MPI_THREAD_FUNNELED {
			C.MPI_Finalize()
			err = fmt.Errorf("mpi: the MPI library grants thread level %d, below MPI_THREAD_FUNNELED (%d) that a Go program needs", provided, C.MPI_THREAD_FUNNELED)
			return
		}
		if world, err = newComm(C.peft_comm_world()); err != nil {
			C.MPI_Finalize()
			return
		}
		if by, many := launchedAsMany(os.Getenv); many && world.size == 1 {
			C.MPI_Finalize()
			err = fmt.Errorf("mpi: %s started this process as one of several ranks, but MPI sees a world of one: the MPI library this binary links is not the launcher's", by)
		}
	})
	if err != nil {
		th.stop()
		return nil, err
	}
	world.world = true
	thread.Store(th)
	return world, nil
}

// newComm sets h to return errors and reads its ranks; it runs on the MPI
// thread.
func newComm(h C.MPI_Comm) (*Comm, error) {
	if rc := C.peft_errors_return(h); rc != C.MPI_SUCCESS {
		return nil, callError("MPI_Comm_set_errhandler", rc)
	}
	c := &Comm{h: h}
	var err error
	if c.rank, c.size, err = rankSize(h); err != nil {
		return nil, err
	}
	var shared C.MPI_Comm
	if rc := C.peft_split_shared(h, &shared); rc != C.MPI_SUCCESS {
		return nil, callError("MPI_Comm_split_type", rc)
	}
	c.localRank, c.localSize, err = rankSize(shared)
	if rc := C.MPI_Comm_free(&shared); rc != C.MPI_SUCCESS && err == nil {
		err = callError("MPI_Comm_free", rc)
	}
	if err != nil {
		return nil, err
	}
	return c, nil
}

// rankSize returns the rank of this process in h and the size of h.
func rankSize(h C.MPI_Comm) (rank, size int, err error) {
	var r, s C.int
	if rc := C.MPI_Comm_rank(h, &r); rc != C.MPI_SUCCESS {
		return 0, 0, callError("MPI_Comm_rank", rc)
	}
	if rc := C.MPI_Comm_size(h, &s); rc != C.MPI_SUCCESS {
		return 0, 0, callError("MPI_Comm_size", rc)
	}
	return int(r), int(s), nil
}

// stopWorld finalizes MPI and retires its thread.
func stopWorld() error {
	th := thread.Swap(nil)
	var err error
	th.do(func() {
		if rc := C.MPI_Finalize(); rc != C.MPI_SUCCESS {
			err = callError("MPI_Finalize", rc)
		}
	})
	th.stop()
	return err
}

// abortWorld calls MPI_Abort on the MPI thread, or, when that thread stays
// busy (blocked in a collective that may never complete), on the calling
// one: Open MPI honors it from any thread, and waiting could hang.
func abortWorld(code int) {
	th := thread.Load()
	if th == nil {
		return
	}
	abort := func() { C.peft_abort(C.int(code)) }
	if !th.tryDo(abort, abortWait) {
		abort()
	}
}

// callError returns the Error for code returned by MPI function call, or
// nil for MPI_SUCCESS. It runs on the MPI thread.
func callError(call string, code C.int) error {
	if code == C.MPI_SUCCESS {
		return nil
	}
	var text [C.MPI_MAX_ERROR_STRING]C.char
	var n C.int
	msg := "unknown error"
	if C.MPI_Error_string(code, &text[0], &n) == C.MPI_SUCCESS && n > 0 {
		msg = C.GoStringN(&text[0], n)
	}
	return &Error{Call: call, Code: int(code), Text: msg}
}

// onThread runs fn on the MPI thread and returns its error.
func onThread(fn func() error) error {
	var err error
	thread.Load().do(func() { err = fn() })
	return err
}

// inChunks calls fn for consecutive ranges [lo, hi) of at most chunkElems
// elements that cover [0, n), and stops at the first error.
func inChunks(n int, fn func(lo, hi int) C.int, call string) error {
	for lo := 0; lo < n; lo += chunkElems {
		hi := min(lo+chunkElems, n)
		if rc := fn(lo, hi); rc != C.MPI_SUCCESS {
			return callError(call, rc)
		}
	}
	return nil
}

func (c *Comm) allReduceSumFloat32(buf []float32) error {
	return onThread(func() error {
		return inChunks(len(buf), func(lo, hi int) C.int {
			return C.peft_allreduce_sum_float(unsafe.Pointer(&buf[lo]), C.int(hi-lo), c.h)
		}, "MPI_Allreduce")
	})
}

func (c *Comm) allReduceSumFloat64(buf []float64) error {
	return onThread(func() error {
		return inChunks(len(buf), func(lo, hi int) C.int {
			return C.peft_allreduce_sum_double(unsafe.Pointer(&buf[lo]), C.int(hi-lo), c.h)
		}, "MPI_Allreduce")
	})
}

func (c *Comm) broadcastBytes(buf []byte, root int) error {
	return onThread(func() error {
		return inChunks(len(buf), func(lo, hi int) C.int {
			return C.peft_bcast_bytes(unsafe.Pointer(&buf[lo]), C.int(hi-lo), C.int(root), c.h)
		}, "MPI_Bcast")
	})
}

func (c *Comm) broadcastFloat32(buf []float32, root int) error {
	return onThread(func() error {
		return c.rawBroadcastFloat32(buf, root)
	})
}

// rawBroadcastFloat32 is MPI_Bcast without the checks of
// BroadcastFloat32, so that tests can see MPI's own; it runs on the MPI
// thread.
func (c *Comm) rawBroadcastFloat32(buf []float32, root int) error {
	return inChunks(len(buf), func(lo, hi int) C.int {
		return C.peft_bcast_float(unsafe.Pointer(&buf[lo]), C.int(hi-lo), C.int(root), c.h)
	}, "MPI_Bcast")
}

// allGatherFloat32 gathers straight into recv when send fits one call, and
// otherwise gathers each chunk into a scratch buffer and copies every
// rank's piece to its place in recv.
func (c *Comm) allGatherFloat32(send, recv []float32) error {
	n := len(send)
	return onThread(func() error {
		if n == 0 {
			return nil
		}
		if n <= chunkElems {
			return callError("MPI_Allgather", C.peft_allgather_float(unsafe.Pointer(&send[0]), unsafe.Pointer(&recv[0]), C.int(n), c.h))
		}
		scratch := make([]float32, c.size*chunkElems)
		return inChunks(n, func(lo, hi int) C.int {
			m := hi - lo
			rc := C.peft_allgather_float(unsafe.Pointer(&send[lo]), unsafe.Pointer(&scratch[0]), C.int(m), c.h)
			if rc == C.MPI_SUCCESS {
				for r := range c.size {
					copy(recv[r*n+lo:r*n+hi], scratch[r*m:(r+1)*m])
				}
			}
			return rc
		}, "MPI_Allgather")
	})
}

func (c *Comm) barrier() error {
	return onThread(func() error { return callError("MPI_Barrier", C.MPI_Barrier(c.h)) })
}

func (c *Comm) split(color, key int) (*Comm, error) {
	cColor := C.int(color)
	if color == Undefined {
		cColor = C.MPI_UNDEFINED
	}
	var sub *Comm
	err := onThread(func() error {
		var h C.MPI_Comm
		if rc := C.MPI_Comm_split(c.h, cColor, C.int(key), &h); rc != C.MPI_SUCCESS {
			return callError("MPI_Comm_split", rc)
		}
		if C.peft_comm_is_null(h) != 0 {
			return nil
		}
		var err error
		if sub, err = newComm(h); err != nil {
			C.MPI_Comm_free(&h)
		}
		return err
	})
	return sub, err
}

func (c *Comm) free() error {
	return onThread(func() error { return callError("MPI_Comm_free", C.MPI_Comm_free(&c.h)) })
}
