package main

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
	rt "github.com/peftonnx/peftonnx/runtime"
	"github.com/peftonnx/peftonnx/session"
)

// modeSGEMM is the worker that measures the machine's float32
// matrix-product rate through ONNX Runtime, between the two sides' steps.
const modeSGEMM = "sgemm"

// The reference product: [sgemmM, sgemmK] by [sgemmK, sgemmN].
const (
	sgemmM, sgemmK, sgemmN = 1024, 2048, 2048
	// sgemmRuns is how many runs the reference rate is the best of.
	sgemmRuns = 8
	// shapeRuns and shapeBudget bound the runs of each model shape: the
	// best of up to shapeRuns, stopping once shapeBudget has passed.
	shapeRuns   = 3
	shapeBudget = 150 * time.Millisecond
	// maxShapeRows caps the rows of the model shapes' products: MLAS runs
	// at its full rate long before, and a 4096-row product by the LM head
	// would need 800 MB for its output alone.
	maxShapeRows = 1024
)

// matmulRun is one MatMul session, [m, k] fed by [k, n] held as an
// initializer, as a model's weights are (pre-packed by ONNX Runtime),
// bound once.
type matmulRun struct {
	m, k, n int
	sess    *session.Session
	bind    *rt.Binding
}

// openMatmul builds and opens the product of an [m, k] input by a random
// [k, n] weight with threads intra-op threads, and runs it once (ONNX
// Runtime packs the weight and allocates the output on the first run).
func openMatmul(m, k, n, threads int) (*matmulRun, error) {
	g := graph.New(&onnxpb.ModelProto{IrVersion: 8, ProducerName: "peftbench", Graph: &onnxpb.GraphProto{Name: "sgemm"}}, "")
	g.SetOpset("", 17)
	b := graph.NewBuilder(g, graph.BuilderOptions{})
	g.AddInput(graph.TensorInfo("a", dtype.Float32, []int64{int64(m), int64(k)}))
	rng := rand.New(rand.NewPCG(uint64(k), uint64(n)))
	w := make([]float32, k*n)
	for i := range w {
		w[i] = float32(rng.NormFloat64())
	}
	weight := b.Initializer("b", graph.NewFloat32Tensor("", dtype.Float32, []int64{int64(k), int64(n)}, w))
	y := b.Op("MatMul", []string{"a", weight})
	g.AddOutput(graph.TensorInfo(y, dtype.Float32, []int64{int64(m), int64(n)}))
	s, err := session.OpenModel(g, session.WithRuntime(rt.WithIntraOpThreads(threads)), session.WithName(fmt.Sprintf("the %d×%d·%d×%d product", m, k, k, n)))
	if err != nil {
		return nil, err
	}
	a := make([]float32, m*k)
	for i := range a {
		a[i] = float32(rng.NormFloat64())
	}
	in, err := rt.NewFloat32([]int64{int64(m), int64(k)}, a)
	if err != nil {
		s.Close()
		return nil, err
	}
	r := &matmulRun{m: m, k: k, n: n, sess: s}
	if r.bind, err = s.Bind(map[string]*rt.Tensor{"a": in}, nil); err != nil {
		s.Close()
		return nil, err
	}
	if _, err := r.bind.Run(); err != nil {
		s.Close()
		return nil, err
	}
	return r, nil
}

// best runs the product up to runs times, stopping once budget has passed
// (0: no limit), and returns the best rate in GFLOP/s.
func (r *matmulRun) best(runs int, budget time.Duration) (float64, error) {
	fastest := time.Duration(1<<63 - 1)
	start := time.Now()
	for i := 0; i < runs; i++ {
		t0 := time.Now()
		if _, err := r.bind.Run(); err != nil {
			return 0, err
		}
		fastest = min(fastest, time.Since(t0))
		if budget > 0 && time.Since(start) > budget {
			break
		}
	}
	return 2 * float64(r.m) * float64(r.k) * float64(r.n) / fastest.Seconds() / 1e9, nil
}

// shapeKey names a weight shape in the reports: "768x3072".
func shapeKey(k, n int) string { return fmt.Sprintf("%dx%d", k, n) }

// sgemmRun is the SGEMM worker: the reference product and one product per
// weight shape of the model's linear layers (forward, and transposed for
// the input gradients), at the step's rows (at most maxShapeRows).
type sgemmRun struct {
	ref    *matmulRun
	shapes []*matmulRun
}

// openSGEMM prepares the SGEMM worker on the export folder dir at batch
// rows (0: the export's): the shapes of a LoRA step, which has every
// weight shape of the model, forward and transposed.
func openSGEMM(dir string, batch, threads int) (*sgemmRun, error) {
	spec, err := readSpec(dir)
	if err != nil {
		return nil, err
	}
	batch = spec.rows(batch)
	s := &sgemmRun{}
	if s.ref, err = openMatmul(sgemmM, sgemmK, sgemmN, threads); err != nil {
		return nil, err
	}
	rows := min(batch*spec.Seq, maxShapeRows)
	for _, kn := range linearShapes(stepWork(spec, modeTrainLoRA, batch)) {
		r, err := openMatmul(rows, kn[0], kn[1], threads)
		if err != nil {
			s.Close()
			return nil, err
		}
		s.shapes = append(s.shapes, r)
	}
	return s, nil
}

// measure returns the reference rate and the rate of each model shape, in
// GFLOP/s.
func (s *sgemmRun) measure() (float64, map[string]float64, error) {
	ref, err := s.ref.best(sgemmRuns, 0)
	if err != nil {
		return 0, nil, err
	}
	shapes := map[string]float64{}
	for _, r := range s.shapes {
		if shapes[shapeKey(r.k, r.n)], err = r.best(shapeRuns, shapeBudget); err != nil {
			return 0, nil, err
		}
	}
	return ref, shapes, nil
}

// Close releases the sessions.
func (s *sgemmRun) Close() {
	for _, r := range append(s.shapes, s.ref) {
		if r != nil {
			r.sess.Close()
		}
	}
}

// shapeLimit returns how long work would take at the measured rates,
// in seconds: each linear product at the rate of its own weight shape,
// the rest at the reference rate. ok is false when a linear shape has no
// rate.
func shapeLimit(work []gemm, ref float64, shapes map[string]float64) (seconds float64, ok bool) {
	if ref <= 0 {
		return 0, false
	}
	for _, g := range work {
		rate := ref
		if g.Linear && g.Part != partWeightGrads {
			if rate = shapes[shapeKey(g.K, g.N)]; rate <= 0 {
				return 0, false
			}
		}
		seconds += g.flops() / 1e9 / rate
	}
	return seconds, true
}

// cmdSGEMM measures the yardstick alone: ONNX Runtime's float32 rate on
// the reference product and on the weight shapes of the model at -size,
// batch × seq, the best of each of -steps samples, beside the matrix-product
// work of each kind of row.
func cmdSGEMM(args []string) error {
	fs, c, t := trainCommand("sgemm", 3)
	fs.Parse(args)
	if c.threads <= 0 {
		return fmt.Errorf("peftbench: -threads %d: want > 0", c.threads)
	}
	spec, err := newSpec(t.size, t.batch, t.seq, 1)
	if err != nil {
		return err
	}
	dir, err := exportSpec(c.cache(), t.size, t.batch, t.seq, 1000)
	if err != nil {
		return err
	}
	s, err := openSGEMM(dir, t.batch, c.threads)
	if err != nil {
		return err
	}
	defer s.Close()
	var y SGEMMResult
	for range t.steps {
		ref, shapes, err := s.measure()
		if err != nil {
			return err
		}
		y.add(ref, shapes)
	}
	fmt.Printf("%s model, batch %d, seq %d, %d threads: SGEMM (%d×%d by %d×%d, best of %d) %s GFLOP/s\n",
		t.size, t.batch, t.seq, c.threads, sgemmM, sgemmK, sgemmK, sgemmN, sgemmRuns, joinRates(y.Samples))
	for _, mode := range []string{modeTrainLoRA, modeTrainFull, modeForwardBase} {
		work := stepWork(spec, mode, t.batch)
		c := &Comparison{}
		y.finish(work, c)
		fmt.Printf("%-18s %8.1f GFLOP a step; at the measured rates %.0f ms\n", mode, totalFlops(work)/1e9, func() float64 {
			sec, _ := shapeLimit(work, y.GFLOPS, y.Shapes)
			return sec * 1e3
		}())
	}
	for _, k := range slices.Sorted(maps.Keys(y.Shapes)) {
		fmt.Printf("  %-12s %6.0f GFLOP/s at %d rows\n", k, y.Shapes[k], min(t.batch*t.seq, maxShapeRows))
	}
	return nil
}

// joinRates formats rates as "412 390 …".
func joinRates(v []float64) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = fmt.Sprintf("%.0f", x)
	}
	return strings.Join(s, " ")
}
