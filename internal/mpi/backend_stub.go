//go:build !mpi

package mpi

import (
	"fmt"
	"os"
)

// Enabled reports whether this binary was built with MPI (the mpi build
// tag). Without it, the world is this process alone.
const Enabled = false

// handle is the MPI communicator behind a Comm; built without MPI there is
// none.
type handle struct{}

// startWorld returns the one-rank world, or an error when a launcher
// started this process as one of several ranks.
func startWorld() (*Comm, error) {
	if by, many := launchedAsMany(os.Getenv); many {
		return nil, fmt.Errorf("mpi: %s started this process as one of several ranks, but it was built without MPI: build it with -tags mpi where Open MPI is installed (make build does so)", by)
	}
	return &Comm{size: 1, localSize: 1, world: true}, nil
}

func stopWorld() error { return nil }

func abortWorld(int) {}

// The collectives of a one-rank world leave the data as it is: a sum over
// one rank is that rank's values, and a broadcast from rank 0 to itself
// copies nothing.

func (c *Comm) allReduceSumFloat32([]float32) error   { return nil }
func (c *Comm) allReduceSumFloat64([]float64) error   { return nil }
func (c *Comm) broadcastBytes([]byte, int) error      { return nil }
func (c *Comm) broadcastFloat32([]float32, int) error { return nil }
func (c *Comm) barrier() error                        { return nil }
func (c *Comm) free() error                           { return nil }

func (c *Comm) allGatherFloat32(send, recv []float32) error {
	copy(recv, send)
	return nil
}

// split returns, for any color but Undefined, a communicator of this one
// rank again.
func (c *Comm) split(color, _ int) (*Comm, error) {
	if color == Undefined {
		return nil, nil
	}
	return &Comm{h: c.h, size: 1, localSize: 1}, nil
}
