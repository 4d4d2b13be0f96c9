package main

import (
	"fmt"
	"io"
	"runtime"
	"strings"

	"github.com/peftonnx/peftonnx/internal/mpi"
	ortrt "github.com/peftonnx/peftonnx/runtime"
	"github.com/peftonnx/peftonnx/train"
)

// mpiStarted is set once the train command has started MPI, which main
// then ends (MPI starts once per process, so a test that runs train twice
// keeps the same world).
var mpiStarted bool

// finishMPI ends MPI if the train command started it.
func finishMPI() error {
	if !mpiStarted {
		return nil
	}
	return mpi.Finalize()
}

// trainRanks is what the train command knows of the ranks it runs among:
// the world that mpirun (or srun, or another MPI launcher) started, one
// process in a build without MPI or without a launcher.
type trainRanks struct {
	world *mpi.Comm
}

// joinTrainRanks starts MPI. Built without MPI, the world is this process
// alone, and a launcher's several ranks are an error that says to build
// with MPI.
func joinTrainRanks() (trainRanks, error) {
	w, err := mpi.Init()
	if err != nil {
		return trainRanks{}, fmt.Errorf("train: %w", err)
	}
	mpiStarted = true
	return trainRanks{world: w}, nil
}

// many reports whether several ranks train together.
func (r trainRanks) many() bool { return r.world.Size() > 1 }

// leader reports whether this rank writes the outputs and prints: rank 0.
func (r trainRanks) leader() bool { return r.world.Rank() == 0 }

// configure makes the trainer options those of this rank: the world as
// the trainer's Collective, unless --threads says otherwise the machine's
// cores shared among the ranks on it, and with --device cuda (no index)
// the GPU of the rank's index on its machine.
func (r trainRanks) configure(opts *train.Options, threads int, device string) {
	if !r.many() {
		return
	}
	opts.Collective = r.world
	if threads == 0 {
		opts.Session = append(opts.Session, ortrt.WithIntraOpThreads(max(1, runtime.NumCPU()/max(1, r.world.LocalSize()))))
	}
	if d := rankDevice(device, r.world.LocalRank()); d != device {
		opts.Session = append(opts.Session, ortrt.WithDevice(d))
	}
}

// rankDevice returns the device of the rank of index localRank on its
// machine: cuda:<localRank> for "cuda" or "gpu", so that the ranks of a
// machine share out its GPUs, and device itself otherwise (cpu, or a GPU
// the user named).
func rankDevice(device string, localRank int) string {
	switch strings.ToLower(strings.TrimSpace(device)) {
	case "cuda", "gpu":
		return fmt.Sprintf("cuda:%d", localRank)
	}
	return device
}

// output returns w on rank 0 and a writer that drops everything on the
// other ranks, so that the job prints its report once.
func (r trainRanks) output(w io.Writer) io.Writer {
	if r.leader() {
		return w
	}
	return io.Discard
}

// run runs the train command's work on this rank. Of several ranks, an
// error or a panic on any rank is printed with the rank and ends the whole
// job through MPI_Abort with exit status 1: the other ranks would wait
// for it in their next collective.
func (r trainRanks) run(cx *context, work func() error) error {
	if !r.many() {
		return work()
	}
	err := runGuarded(cx.cmd.name, work)
	if err != nil {
		fail(cx.stderr, fmt.Errorf("rank %d of %d: %w", r.world.Rank(), r.world.Size(), err))
		mpi.Abort(1)
	}
	return nil
}
