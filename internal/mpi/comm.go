package mpi

import (
	"errors"
	"fmt"
	"math"
	"sync/atomic"
	"unsafe"
)

// Undefined, passed to Split as the color, leaves the calling rank out of
// every new communicator (it stands for MPI_UNDEFINED).
const Undefined = -1

// Comm is a communicator: a group of ranks, numbered from 0, that take
// part in collectives together. The world (from Init) holds every rank;
// Split makes sub-communicators, such as a tensor-parallel and a
// data-parallel group.
//
// Every collective must be called by every rank of the communicator, in
// the same order, with matching arguments (the same length, the same
// root); MPI cannot check that, and a rank that differs leaves the others
// waiting. Calls from several goroutines are safe, but run one after the
// other in an order that differs between ranks, so each communicator's
// collectives belong in one goroutine.
type Comm struct {
	h                    handle
	rank, size           int
	localRank, localSize int
	world                bool
	freed                atomic.Bool
}

// Rank returns this process's rank in c, from 0 to Size()-1.
func (c *Comm) Rank() int { return c.rank }

// Size returns the number of ranks in c.
func (c *Comm) Size() int { return c.size }

// LocalRank returns this process's rank among the ranks of c on the same
// machine (those that can share memory: MPI_COMM_TYPE_SHARED).
func (c *Comm) LocalRank() int { return c.localRank }

// LocalSize returns the number of ranks of c on this machine, this one
// included.
func (c *Comm) LocalSize() int { return c.localSize }

// AllReduceSumFloat32 replaces buf, on every rank, with the element-wise
// sum of buf over the ranks of c. The order in which MPI adds may differ
// from one length or rank count to another, so sums are exact only up to
// float32 rounding.
func (c *Comm) AllReduceSumFloat32(buf []float32) error {
	return c.collective("AllReduceSumFloat32", func() error { return c.allReduceSumFloat32(buf) })
}

// AllReduceSumFloat64 is AllReduceSumFloat32 for float64.
func (c *Comm) AllReduceSumFloat64(buf []float64) error {
	return c.collective("AllReduceSumFloat64", func() error { return c.allReduceSumFloat64(buf) })
}

// BroadcastBytes copies buf of rank root into buf of every other rank of
// c. Every rank passes a buf of the same length.
func (c *Comm) BroadcastBytes(buf []byte, root int) error {
	return c.collective("BroadcastBytes", func() error {
		if err := c.checkRoot("BroadcastBytes", root); err != nil {
			return err
		}
		return c.broadcastBytes(buf, root)
	})
}

// BroadcastFloat32 is BroadcastBytes for float32.
func (c *Comm) BroadcastFloat32(buf []float32, root int) error {
	return c.collective("BroadcastFloat32", func() error {
		if err := c.checkRoot("BroadcastFloat32", root); err != nil {
			return err
		}
		return c.broadcastFloat32(buf, root)
	})
}

// AllGatherFloat32 concatenates send of every rank of c, in rank order,
// into recv of every rank: recv[r*len(send):(r+1)*len(send)] is send of
// rank r. Every rank passes a send of the same length, and a recv of
// Size()*len(send) values that does not overlap send.
func (c *Comm) AllGatherFloat32(send, recv []float32) error {
	return c.collective("AllGatherFloat32", func() error {
		if len(recv) != c.size*len(send) {
			return fmt.Errorf("mpi: AllGatherFloat32: recv holds %d values, want %d ranks × %d = %d", len(recv), c.size, len(send), c.size*len(send))
		}
		if overlap(send, recv) {
			return errors.New("mpi: AllGatherFloat32: send and recv overlap")
		}
		return c.allGatherFloat32(send, recv)
	})
}

// Barrier returns on each rank of c once every rank of c has called it.
func (c *Comm) Barrier() error {
	return c.collective("Barrier", c.barrier)
}

// Split divides c into communicators, one per color: the ranks that pass
// the same color form one, numbered in the order of key (ties in the order
// of their rank in c). A rank that passes Undefined joins none and gets
// nil. Every rank of c calls Split. Free each communicator Split returns
// once done with it.
func (c *Comm) Split(color, key int) (*Comm, error) {
	if color < 0 && color != Undefined {
		return nil, fmt.Errorf("mpi: Split: color %d is negative (pass Undefined to leave a rank out)", color)
	}
	if color > math.MaxInt32 || key < math.MinInt32 || key > math.MaxInt32 {
		return nil, fmt.Errorf("mpi: Split: color %d or key %d does not fit MPI's int", color, key)
	}
	var sub *Comm
	err := c.collective("Split", func() (err error) {
		sub, err = c.split(color, key)
		return err
	})
	return sub, err
}

// Free releases a communicator that Split returned; it is collective over
// the communicator's ranks. The world cannot be freed (Finalize ends it).
func (c *Comm) Free() error {
	if c != nil && c.world {
		return errors.New("mpi: Free: the world communicator ends with Finalize, not Free")
	}
	return c.collective("Free", func() error {
		if c.freed.Swap(true) {
			return errors.New("mpi: Free: communicator already freed")
		}
		return c.free()
	})
}

// collective runs op, the body of the collective named name, once c and
// the session are usable, and keeps Finalize waiting until it returns.
func (c *Comm) collective(name string, op func() error) error {
	if c == nil {
		return fmt.Errorf("mpi: %s on a nil communicator", name)
	}
	state.mu.RLock()
	defer state.mu.RUnlock()
	if state.finalized {
		return fmt.Errorf("mpi: %s after Finalize", name)
	}
	if c.freed.Load() && name != "Free" {
		return fmt.Errorf("mpi: %s on a freed communicator", name)
	}
	return op()
}

// checkRoot returns an error naming the collective when root is not a
// rank of c.
func (c *Comm) checkRoot(name string, root int) error {
	if root < 0 || root >= c.size {
		return fmt.Errorf("mpi: %s: root %d is not a rank of the communicator's %d", name, root, c.size)
	}
	return nil
}

// overlap reports whether a and b share memory.
func overlap(a, b []float32) bool {
	if len(a) == 0 || len(b) == 0 {
		return false
	}
	const size = unsafe.Sizeof(float32(0))
	aLo, bLo := uintptr(unsafe.Pointer(&a[0])), uintptr(unsafe.Pointer(&b[0]))
	return aLo < bLo+uintptr(len(b))*size && bLo < aLo+uintptr(len(a))*size
}
