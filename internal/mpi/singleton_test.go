//go:build mpi

package mpi

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestSingleton runs the MPI build without mpirun, as a user runs
// bin/peftonnx on one machine, and without a launcher of its own MPI but
// with another's environment, as MPICH's mpiexec would start it.
func TestSingleton(t *testing.T) {
	if onRank() {
		if world.Size() != 1 || world.Rank() != 0 || world.LocalSize() != 1 {
			t.Fatalf("world: got rank %d of %d (%d on this machine), want 0 of 1", world.Rank(), world.Size(), world.LocalSize())
		}
		buf := []float32{1.5, 2}
		if err := world.AllReduceSumFloat32(buf); err != nil || buf[0] != 1.5 || buf[1] != 2 {
			t.Errorf("allreduce over one rank: got %v, %v; want [1.5 2]", buf, err)
		}
		return
	}
	mpirun(t) // the singleton needs Open MPI's runtime as much as mpirun does
	tests := []struct {
		name    string
		env     []string
		wantErr bool
		wantOut string
	}{
		{name: "alone", wantOut: "--- PASS: TestSingleton"},
		{name: "under another launcher", env: []string{"PMI_SIZE=2"}, wantErr: true,
			wantOut: "mpi: a PMI launcher (MPICH's mpiexec, Slurm) (PMI_SIZE=2) started this process as one of several ranks, but MPI sees a world of one: the MPI library this binary links is not the launcher's"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run", "^TestSingleton$", "-test.v")
			cmd.Env = append(os.Environ(), rankTestEnv+"=TestSingleton", "OMPI_ALLOW_RUN_AS_ROOT=1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1")
			cmd.Env = append(cmd.Env, tt.env...)
			out, err := cmd.CombinedOutput()
			if (err != nil) != tt.wantErr || !strings.Contains(string(out), tt.wantOut) {
				t.Errorf("got %v, want failure=%v and %q; output:\n%s", err, tt.wantErr, tt.wantOut, out)
			}
		})
	}
}
