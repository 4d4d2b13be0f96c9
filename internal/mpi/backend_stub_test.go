//go:build !mpi

package mpi

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestOneRankWorld walks the one-rank world of the default build through
// its whole life: Init, every collective, Split and Free, Finalize, and
// the calls that Finalize ends. It is the only test of this build that
// calls Init, since a process has one MPI session.
func TestOneRankWorld(t *testing.T) {
	if Enabled {
		t.Fatal("Enabled: got true without the mpi tag")
	}
	w, err := Init()
	if err != nil {
		t.Fatal(err)
	}
	if w.Rank() != 0 || w.Size() != 1 || w.LocalRank() != 0 || w.LocalSize() != 1 {
		t.Errorf("world: got rank %d of %d (local %d of %d), want 0 of 1 (0 of 1)", w.Rank(), w.Size(), w.LocalRank(), w.LocalSize())
	}
	if again, err := Init(); again != w || err != nil {
		t.Errorf("a second Init: got (%p, %v), want the world %p", again, err, w)
	}

	f32 := []float32{1.5, -2, 3}
	f64 := []float64{0.25, 1e300}
	b := []byte("abc")
	recv := make([]float32, 3)
	calls := []struct {
		what string
		err  error
	}{
		{"AllReduceSumFloat32", w.AllReduceSumFloat32(f32)},
		{"AllReduceSumFloat64", w.AllReduceSumFloat64(f64)},
		{"BroadcastBytes", w.BroadcastBytes(b, 0)},
		{"BroadcastFloat32", w.BroadcastFloat32(f32, 0)},
		{"AllGatherFloat32", w.AllGatherFloat32(f32, recv)},
		{"Barrier", w.Barrier()},
	}
	for _, c := range calls {
		if c.err != nil {
			t.Errorf("%s: %v", c.what, c.err)
		}
	}
	if want := []float32{1.5, -2, 3}; !slices.Equal(f32, want) || !slices.Equal(recv, want) {
		t.Errorf("over one rank: got buf %v and gathered %v, want both %v", f32, recv, want)
	}
	if want := []float64{0.25, 1e300}; !slices.Equal(f64, want) {
		t.Errorf("AllReduceSumFloat64 over one rank: got %v, want %v", f64, want)
	}
	if string(b) != "abc" {
		t.Errorf("BroadcastBytes from rank 0 to itself: got %q, want %q", b, "abc")
	}

	bad := []struct {
		what string
		err  error
		want string
	}{
		{"broadcast from root 1", w.BroadcastFloat32(f32, 1), "mpi: BroadcastFloat32: root 1 is not a rank"},
		{"broadcast from root -1", w.BroadcastBytes(b, -1), "mpi: BroadcastBytes: root -1 is not a rank"},
		{"gather into a short recv", w.AllGatherFloat32(f32, recv[:2]), "mpi: AllGatherFloat32: recv holds 2 values, want 1 ranks × 3 = 3"},
		{"gather onto itself", w.AllGatherFloat32(f32, f32), "mpi: AllGatherFloat32: send and recv overlap"},
		{"free the world", w.Free(), "mpi: Free: the world communicator ends with Finalize"},
		{"a nil communicator", (*Comm)(nil).Barrier(), "mpi: Barrier on a nil communicator"},
	}
	for _, c := range bad {
		if c.err == nil || !strings.HasPrefix(c.err.Error(), c.want) {
			t.Errorf("%s: got %v, want %q", c.what, c.err, c.want)
		}
	}

	sub, err := w.Split(5, 0)
	if err != nil || sub == nil || sub.Size() != 1 || sub.Rank() != 0 {
		t.Fatalf("Split(5, 0): got (%+v, %v), want a communicator of one rank", sub, err)
	}
	if none, err := w.Split(Undefined, 0); none != nil || err != nil {
		t.Errorf("Split(Undefined, 0): got (%+v, %v), want (nil, nil)", none, err)
	}
	if _, err := w.Split(-3, 0); err == nil || !strings.Contains(err.Error(), "color -3") {
		t.Errorf("Split(-3, 0): got %v, want an error naming the color", err)
	}
	if err := sub.Free(); err != nil {
		t.Errorf("Free: %v", err)
	}
	if err := sub.Barrier(); err == nil || !strings.Contains(err.Error(), "freed communicator") {
		t.Errorf("Barrier after Free: got %v, want an error", err)
	}

	if err := Finalize(); err != nil {
		t.Fatal(err)
	}
	_, initErr := Init()
	after := []struct {
		what string
		err  error
		want string
	}{
		{"Barrier", w.Barrier(), "mpi: Barrier after Finalize"},
		{"AllReduceSumFloat32", w.AllReduceSumFloat32(f32), "mpi: AllReduceSumFloat32 after Finalize"},
		{"Finalize", Finalize(), "mpi: Finalize called twice"},
		{"Init", initErr, "mpi: Init after Finalize"},
	}
	for _, c := range after {
		if c.err == nil || !strings.HasPrefix(c.err.Error(), c.want) {
			t.Errorf("%s after Finalize: got %v, want %q", c.what, c.err, c.want)
		}
	}
}

// TestInitRefusesSeveralRanks checks that the default build, started by a
// launcher as one of several ranks, refuses to run as if it were alone.
func TestInitRefusesSeveralRanks(t *testing.T) {
	tests := []struct {
		env, value string
		wantErr    string // "" for a one-rank world
	}{
		{env: "OMPI_COMM_WORLD_SIZE", value: "2", wantErr: "mpi: Open MPI's mpirun (OMPI_COMM_WORLD_SIZE=2) started this process as one of several ranks, but it was built without MPI: build it with -tags mpi"},
		{env: "PMI_SIZE", value: "4", wantErr: "(PMI_SIZE=4) started this process as one of several ranks, but it was built without MPI"},
		{env: "PMIX_RANK", value: "1", wantErr: "(PMIX_RANK=1) started this process as one of several ranks, but it was built without MPI"},
		{env: "OMPI_COMM_WORLD_SIZE", value: "1"},
		{env: "PMIX_RANK", value: "0"},
	}
	for _, tt := range tests {
		t.Run(tt.env+"="+tt.value, func(t *testing.T) {
			t.Setenv(tt.env, tt.value)
			w, err := startWorld()
			switch {
			case tt.wantErr == "" && (err != nil || w.Size() != 1):
				t.Errorf("got (%+v, %v), want a world of one rank", w, err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("got %v, want an error with %q", err, tt.wantErr)
			}
		})
	}
}

// childEnv, set in the environment of this test binary run again, names
// what TestAbortExits's child does.
const childEnv = "PEFTONNX_MPI_TEST_CHILD"

// TestAbortExits checks that Abort and AbortOnPanic, built without MPI,
// end the process with the code they promise.
func TestAbortExits(t *testing.T) {
	switch os.Getenv(childEnv) {
	case "init":
		if _, err := Init(); err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		return
	case "abort":
		Abort(7)
	case "panic":
		defer AbortOnPanic()
		panic("boom")
	case "":
	default:
		t.Fatalf("unknown child %q", os.Getenv(childEnv))
	}
	tests := []struct {
		child      string
		wantCode   int
		wantStderr string
	}{
		{child: "abort", wantCode: 7},
		{child: "panic", wantCode: 2, wantStderr: "panic: boom\n\ngoroutine "},
	}
	for _, tt := range tests {
		cmd := exec.Command(os.Args[0], "-test.run", "^TestAbortExits$")
		cmd.Env = append(os.Environ(), childEnv+"="+tt.child)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != tt.wantCode {
			t.Errorf("%s: got %v, want exit status %d; stderr:\n%s", tt.child, err, tt.wantCode, stderr.String())
		}
		if !strings.Contains(stderr.String(), tt.wantStderr) {
			t.Errorf("%s: stderr lacks %q:\n%s", tt.child, tt.wantStderr, stderr.String())
		}
	}
}

// TestUnderMPIRunWithoutMPI starts the default build under a real mpirun,
// as a user who forgot -tags mpi would, and checks that every rank
// refuses to run alone.
func TestUnderMPIRunWithoutMPI(t *testing.T) {
	mpirun, err := exec.LookPath("mpirun")
	if err != nil {
		t.Skip("mpirun is not installed (Debian: apt-get install openmpi-bin); make test installs it where it can")
	}
	cmd := exec.Command(mpirun, "--oversubscribe", "-np", "2", "--mca", "oob_tcp_if_include", "lo", "--mca", "btl", "self",
		os.Args[0], "-test.run", "^TestAbortExits$")
	cmd.Env = append(os.Environ(), childEnv+"=init", "OMPI_ALLOW_RUN_AS_ROOT=1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1")
	out, err := cmd.CombinedOutput()
	const want = "mpi: Open MPI's mpirun (OMPI_COMM_WORLD_SIZE=2) started this process as one of several ranks, but it was built without MPI"
	if err == nil || strings.Count(string(out), want) != 2 {
		t.Errorf("mpirun -np 2: got %v, want a failure with %q from both ranks; output:\n%s", err, want, out)
	}
}
