package train

import (
	"encoding/binary"
	"math"
)

// Collective is the group of processes (ranks) that train one adapter
// together by data parallelism, as MPI runs them: package internal/mpi's
// *mpi.Comm is one. Every rank calls each collective in the same order
// with buffers of the same length; the trainer sees to that, as long as
// every rank trains the same model on the same data with the same
// options.
type Collective interface {
	// Rank is this process's rank, from 0 to Size()-1; Size the number of
	// ranks.
	Rank() int
	Size() int
	// AllReduceSumFloat32 and AllReduceSumFloat64 replace buf, on every
	// rank, with its element-wise sum over the ranks.
	AllReduceSumFloat32(buf []float32) error
	AllReduceSumFloat64(buf []float64) error
	// BroadcastBytes copies buf of rank root into buf of every other rank.
	BroadcastBytes(buf []byte, root int) error
}

// solo is the Collective of a process that trains alone: rank 0 of 1,
// whose sums and broadcasts leave the data as it is.
type solo struct{}

func (solo) Rank() int                           { return 0 }
func (solo) Size() int                           { return 1 }
func (solo) AllReduceSumFloat32([]float32) error { return nil }
func (solo) AllReduceSumFloat64([]float64) error { return nil }
func (solo) BroadcastBytes([]byte, int) error    { return nil }

// distributed reports whether the trainer runs as one of several ranks.
func (t *Trainer) distributed() bool { return t.comm.Size() > 1 }

// leader reports whether this rank writes the run's files: rank 0, or the
// process that trains alone.
func (t *Trainer) leader() bool { return t.comm.Rank() == 0 }

// allReduce64 sums buf over the ranks, with an error that says what the
// sum was for.
func (t *Trainer) allReduce64(what string, buf []float64) error {
	if err := t.comm.AllReduceSumFloat64(buf); err != nil {
		return errorf("data parallel: %s: %w", what, err)
	}
	return nil
}

// shareBytes is ShareBytes over the trainer's ranks.
func (t *Trainer) shareBytes(what string, data []byte, err error) ([]byte, error) {
	return ShareBytes(t.comm, what, data, err)
}

// ShareBytes returns, on every rank of c, what rank 0 passed as data and
// err: the other ranks' arguments are ignored. When rank 0's err is not
// nil, every rank gets an error: rank 0 its own, the others one that says
// rank 0 failed (what names the data), so that every rank stops at the
// same point. A c of one rank returns data and err.
func ShareBytes(c Collective, what string, data []byte, err error) ([]byte, error) {
	if c.Size() < 2 {
		return data, err
	}
	leader := c.Rank() == 0
	// The header: 1 when rank 0 failed, then the length of its data.
	head := make([]byte, 9)
	if leader {
		if err != nil {
			head[0] = 1
		}
		binary.LittleEndian.PutUint64(head[1:], uint64(len(data)))
	}
	if berr := c.BroadcastBytes(head, 0); berr != nil {
		return nil, errorf("data parallel: %s: %w", what, berr)
	}
	if head[0] == 1 {
		if leader {
			return nil, err
		}
		return nil, errorf("data parallel: %s: rank 0 failed", what)
	}
	n := binary.LittleEndian.Uint64(head[1:])
	if n > math.MaxInt32*16 {
		return nil, errorf("data parallel: %s: rank 0 sends %d bytes", what, n)
	}
	if !leader {
		data = make([]byte, n)
	}
	if berr := c.BroadcastBytes(data, 0); berr != nil {
		return nil, errorf("data parallel: %s: %w", what, berr)
	}
	return data, nil
}
