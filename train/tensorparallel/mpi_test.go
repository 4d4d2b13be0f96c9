//go:build mpi

package tensorparallel

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/internal/mpi"
	"github.com/peftonnx/peftonnx/train"
)

// In the MPI build, TestTensorParallelMPI starts mpirun on this test
// binary with rankDirEnv set; each rank then runs the test against the
// world, and writes its losses and its shard into that folder.
const rankDirEnv = "PEFTONNX_TP_TEST_DIR"

// world is a rank's world communicator; nil in the parent.
var world *mpi.Comm

func TestMain(m *testing.M) {
	if os.Getenv(rankDirEnv) == "" {
		os.Exit(m.Run())
	}
	flag.Parse()
	w, err := mpi.Init()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	world = w
	code := m.Run()
	if code != 0 {
		mpi.Abort(code)
	}
	if err := mpi.Finalize(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(code)
}

// TestTensorParallelMPI trains the tiny run on 2 tensor-parallel ranks
// that mpirun starts, each saving its shard, and checks the losses and the
// saved shards, merged, against one process.
func TestTensorParallelMPI(t *testing.T) { mpiRun(t, "TestTensorParallelMPI", 2, 1) }

// TestDataTimesTensorParallelMPI is TestTensorParallelMPI on 2
// data-parallel × 2 tensor-parallel ranks (mpirun -np 4), the groups made
// by splitting the world; the ranks of data-parallel rank 0 save their
// shards.
func TestDataTimesTensorParallelMPI(t *testing.T) { mpiRun(t, "TestDataTimesTensorParallelMPI", 4, 2) }

// mpiRun is the body of the tests above: on np ranks, dpN data-parallel
// groups of np/dpN tensor-parallel ranks.
func mpiRun(t *testing.T, test string, np, dpN int) {
	requireORT(t)
	run := newTinyRun(t, 31)
	if world != nil {
		rankRun(t, run, dpN)
		return
	}
	mpirun, err := exec.LookPath("mpirun")
	if err != nil {
		t.Skip("mpirun is not installed (Debian: apt-get install openmpi-bin); make test installs it where it can")
	}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, mpirun, "--oversubscribe", "--bind-to", "none", "-np", fmt.Sprint(np),
		"--mca", "oob_tcp_if_include", "lo", "--mca", "btl", "self,vader", "--mca", "pml", "ob1",
		os.Args[0], "-test.run", "^"+test+"$", "-test.v")
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	cmd.Env = append(os.Environ(), rankDirEnv+"="+dir, "OMPI_ALLOW_RUN_AS_ROOT=1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mpirun -np %d: %v; output:\n%s", np, err, out)
	}

	want, wantAd := run.oneProcess(t)
	for rank := range np {
		b, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("losses-%d.json", rank)))
		if err != nil {
			t.Fatal(err)
		}
		var got []float64
		if err := json.Unmarshal(b, &got); err != nil || len(got) != len(want) {
			t.Fatalf("rank %d losses %s: %v", rank, b, err)
		}
		for i, w := range want {
			if math.Abs(got[i]-w) > 1e-6*w {
				t.Errorf("rank %d step %d: loss %v, one process %v", rank, i+1, got[i], w)
			}
		}
	}
	merged, err := adapter.LoadPaddleShards(dir)
	if err != nil {
		t.Fatal(err)
	}
	for m, w := range wantAd.Weights {
		g := merged.Weights[m]
		if d := max(relDiff(g.A.Data, w.A.Data), relDiff(g.B.Data, w.B.Data)); d > 1e-5 {
			t.Errorf("%s: the merged shards differ from one process by %.3g", m, d)
		}
	}
}

// rankRun is one rank's part: the world split into data-parallel groups
// of consecutive tensor-parallel ranks, training, and the losses and (on
// data-parallel rank 0) the shard written into the parent's folder.
func rankRun(t *testing.T, run tinyRun, dpN int) {
	dir := os.Getenv(rankDirEnv)
	tpN := world.Size() / dpN
	tp, err := world.Split(world.Rank()/tpN, world.Rank())
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Free()
	var dp train.Collective
	opts := run.opts
	if dpN > 1 {
		d, err := world.Split(world.Rank()%tpN, world.Rank())
		if err != nil {
			t.Fatal(err)
		}
		defer d.Free()
		dp = d
		opts.BatchSize /= dpN
	}
	tr, err := NewWithDataParallel(run.cfg, nil, run.whole, run.data, tp, dp, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	var losses []float64
	for range opts.Steps {
		r, err := tr.TrainStep()
		if err != nil {
			t.Fatal(err)
		}
		losses = append(losses, r.Loss)
	}
	b, _ := json.Marshal(losses)
	if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("losses-%d.json", world.Rank())), b, 0o644); err != nil {
		t.Fatal(err)
	}
	if world.Rank() < tpN {
		if err := tr.SaveShard(dir); err != nil {
			t.Fatal(err)
		}
	}
}
