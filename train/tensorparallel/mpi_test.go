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
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/internal/mpi"
	"github.com/peftonnx/peftonnx/rewrite"
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
func TestTensorParallelMPI(t *testing.T) { mpiRun(t, "TestTensorParallelMPI", 2, 1, false) }

// TestDataTimesTensorParallelMPI is TestTensorParallelMPI on 2
// data-parallel × 2 tensor-parallel ranks (mpirun -np 4), the groups made
// by splitting the world; the ranks of data-parallel rank 0 save their
// shards.
func TestDataTimesTensorParallelMPI(t *testing.T) {
	mpiRun(t, "TestDataTimesTensorParallelMPI", 4, 2, false)
}

// TestDataTimesTensorParallelAccumulateMPI is
// TestDataTimesTensorParallelMPI with micro-batches of 2 (1 per
// data-parallel rank) and gradient accumulation 2, an evaluation on
// held-out data before and after training, and a stop after step 2: rank
// 0 writes a checkpoint, and new trainers on every rank resume from it.
// The losses, evaluations and merged shards are checked against one
// process with the same options, uninterrupted.
func TestDataTimesTensorParallelAccumulateMPI(t *testing.T) {
	mpiRun(t, "TestDataTimesTensorParallelAccumulateMPI", 4, 2, true)
}

// TestDataTimesTensorParallelPrefixMPI is TestDataTimesTensorParallelMPI
// with prefix tuning (newTinyPrefixRun): the ranks' shards of the table,
// gathered into a checkpoint by rank 0, are one process's table.
func TestDataTimesTensorParallelPrefixMPI(t *testing.T) {
	mpiRun(t, "TestDataTimesTensorParallelPrefixMPI", 4, 2, false)
}

// accumulatedRun is the run of TestDataTimesTensorParallelAccumulateMPI.
func accumulatedRun(run tinyRun) tinyRun {
	run.opts.BatchSize, run.opts.GradAccum, run.opts.Steps = 2, 2, 4
	return run
}

// mpiRun is the body of the tests above: on np ranks, dpN data-parallel
// groups of np/dpN tensor-parallel ranks; accumulated runs
// accumulatedRun, with evaluations and a stop.
func mpiRun(t *testing.T, test string, np, dpN int, accumulated bool) {
	requireORT(t)
	run := newTinyRun(t, 31)
	if strings.Contains(test, "Prefix") {
		run = newTinyPrefixRun(t, 31)
	}
	if accumulated {
		run = accumulatedRun(run)
	}
	if world != nil {
		rankRun(t, run, dpN, accumulated)
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
	var wantEvals []train.EvalResult
	if accumulated {
		wantEvals = run.evaluations(t, heldOut(31))
	}
	for rank := range np {
		if accumulated {
			b, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("evals-%d.json", rank)))
			if err != nil {
				t.Fatal(err)
			}
			var got []train.EvalResult
			if err := json.Unmarshal(b, &got); err != nil || len(got) != len(wantEvals) {
				t.Fatalf("rank %d evaluations %s: %v", rank, b, err)
			}
			for i, w := range wantEvals {
				if g := got[i]; math.Abs(g.Loss-w.Loss) > 1e-6*w.Loss || g.Tokens != w.Tokens {
					t.Errorf("rank %d evaluation %d: loss %v over %d tokens, one process %v over %d", rank, i+1, g.Loss, g.Tokens, w.Loss, w.Tokens)
				}
			}
		}
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
	if run.whole.Prefix != nil {
		path, err := train.LatestCheckpoint(filepath.Join(dir, "final"))
		if err != nil || path == "" {
			t.Fatalf("no final checkpoint: %v", err)
		}
		b, err := os.ReadFile(filepath.Join(path, "params.safetensors"))
		if err != nil {
			t.Fatal(err)
		}
		ts, _, err := adapter.DecodeSafetensors(b)
		if err != nil {
			t.Fatal(err)
		}
		g := ts[rewrite.PromptEmbeddingsName]
		if g == nil {
			t.Fatalf("the checkpoint has no %s", rewrite.PromptEmbeddingsName)
		}
		if d := relDiff(g.Data, wantAd.Prompt.Data); d > 1e-5 {
			t.Errorf("the gathered prompt table differs from one process's by %.3g", d)
		}
		return
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
//
// An accumulated run evaluates on heldOut before and after training, and
// stops after step 2: a checkpoint, new trainers, Resume.
func rankRun(t *testing.T, run tinyRun, dpN int, accumulated bool) {
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
	defer func() { tr.Close() }()
	var losses []float64
	var evals []train.EvalResult
	evaluate := func() {
		if !accumulated {
			return
		}
		r, err := tr.Evaluate(heldOut(31))
		if err != nil {
			t.Fatal(err)
		}
		evals = append(evals, r)
	}
	evaluate()
	for tr.Step() < opts.Steps {
		if accumulated && tr.Step() == 2 && len(losses) == 2 {
			ckpt := filepath.Join(dir, "checkpoints")
			if _, err := tr.SaveCheckpoint(ckpt); err != nil {
				t.Fatal(err)
			}
			tr.Close()
			if tr, err = NewWithDataParallel(run.cfg, nil, run.whole, run.data, tp, dp, opts); err != nil {
				t.Fatal(err)
			}
			if ok, err := tr.Resume(ckpt); !ok || err != nil {
				t.Fatalf("resume: %v, %v", ok, err)
			}
		}
		r, err := tr.TrainStep()
		if err != nil {
			t.Fatal(err)
		}
		losses = append(losses, r.Loss)
	}
	evaluate()
	if accumulated {
		b, _ := json.Marshal(evals)
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("evals-%d.json", world.Rank())), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, _ := json.Marshal(losses)
	if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("losses-%d.json", world.Rank())), b, 0o644); err != nil {
		t.Fatal(err)
	}
	if run.whole.Prefix != nil {
		if _, err := tr.SaveCheckpoint(filepath.Join(dir, "final")); err != nil {
			t.Fatal(err)
		}
		return
	}
	if world.Rank() < tpN {
		if err := tr.SaveShard(dir); err != nil {
			t.Fatal(err)
		}
	}
}

// evaluations trains run with train.Trainer on the whole model and
// returns its evaluations on eval before and after training.
func (run tinyRun) evaluations(t *testing.T, eval *train.Dataset) []train.EvalResult {
	t.Helper()
	one, err := train.NewTrainer(run.adapted, run.trainable, run.data, run.opts)
	if err != nil {
		t.Fatal(err)
	}
	defer one.Close()
	before, err := one.Evaluate(eval)
	if err != nil {
		t.Fatal(err)
	}
	for range run.opts.Steps {
		if _, err := one.TrainStep(); err != nil {
			t.Fatal(err)
		}
	}
	after, err := one.Evaluate(eval)
	if err != nil {
		t.Fatal(err)
	}
	return []train.EvalResult{before, after}
}
