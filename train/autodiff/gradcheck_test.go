package autodiff

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
	rt "github.com/peftonnx/peftonnx/runtime"
)

// This file is the finite-difference checker that every rule's test uses.
//
// A test builds a small graph with a testGraph: inputs with random data
// (params are the ones to differentiate), the op under test, and a value y.
// check then appends loss = ReduceSum(y·R) with a random R, asks Build for
// the gradients, runs the training graph in ONNX Runtime, and compares each
// gradient element with the central difference (L(p+h) − L(p−h))/2h of the
// forward graph, also run in ONNX Runtime.

// declMode says how graph inputs declare their shapes, so that both the
// static and the in-graph paths of the rules get exercised.
type declMode int

const (
	declStatic   declMode = iota // every dim known
	declSymbolic                 // every dim a distinct named symbol
	declUnranked                 // no shape at all
)

func (d declMode) String() string {
	return [...]string{"static", "symbolic", "unranked"}[d]
}

// requireORT skips the test when the ONNX Runtime library is not found.
func requireORT(t testing.TB) {
	t.Helper()
	if err := rt.Init(); err != nil {
		if errors.Is(err, rt.ErrLibraryNotFound) {
			t.Skip(err)
		}
		t.Fatal(err)
	}
}

// testGraph builds a one-op (or few-op) model for a gradient check.
type testGraph struct {
	t      testing.TB
	m      *graph.Model
	dt     dtype.Type
	mode   declMode
	rng    *rand.Rand
	feeds  map[string]*feed
	params []string
	n      int
}

// feed is the data of a graph input.
type feed struct {
	dims []int64
	f    []float64 // float inputs
	i    []int64   // int64 inputs
	elem dtype.Type
}

func newTestGraph(t testing.TB, opset int64, dt dtype.Type, mode declMode) *testGraph {
	t.Helper()
	p := &onnxpb.ModelProto{
		IrVersion:   8,
		OpsetImport: []*onnxpb.OperatorSetIdProto{{Version: opset}, {Domain: "com.microsoft", Version: 1}},
		Graph:       &onnxpb.GraphProto{Name: "gradcheck"},
	}
	return &testGraph{t: t, m: graph.New(p, ""), dt: dt, mode: mode, rng: rand.New(rand.NewPCG(1, uint64(opset))), feeds: map[string]*feed{}}
}

func uniform(lo, hi float64) func(*rand.Rand) float64 {
	return func(r *rand.Rand) float64 { return lo + (hi-lo)*r.Float64() }
}

// awayFromZero draws from ±[lo, hi], for ops with a kink at 0.
func awayFromZero(lo, hi float64) func(*rand.Rand) float64 {
	return func(r *rand.Rand) float64 {
		v := lo + (hi-lo)*r.Float64()
		if r.IntN(2) == 0 {
			return -v
		}
		return v
	}
}

func (g *testGraph) declare(name string, dt dtype.Type, dims []int64) {
	var vi *onnxpb.ValueInfoProto
	switch g.mode {
	case declStatic:
		vi = graph.TensorInfo(name, dt, dims)
	case declSymbolic:
		ds := make([]graph.Dim, len(dims))
		for i := range dims {
			ds[i] = graph.DimParam(fmt.Sprintf("%s_d%d", name, i))
		}
		vi = graph.SymbolicTensorInfo(name, dt, ds)
	case declUnranked:
		vi = graph.TensorInfo(name, dt, nil)
		vi.Type.GetTensorType().Shape = nil
	}
	g.m.AddInput(vi)
}

// param adds a float input to differentiate, with values drawn by gen
// (uniform in [-1, 1] when nil).
func (g *testGraph) param(name string, dims []int64, gen func(*rand.Rand) float64) string {
	g.input(name, dims, gen)
	g.params = append(g.params, name)
	return name
}

// input adds a float input that is fed but not differentiated.
func (g *testGraph) input(name string, dims []int64, gen func(*rand.Rand) float64) string {
	if gen == nil {
		gen = uniform(-1, 1)
	}
	v := make([]float64, graph.NumElements(dims))
	for i := range v {
		v[i] = gen(g.rng)
	}
	g.declare(name, g.dt, dims)
	g.feeds[name] = &feed{dims: dims, f: v, elem: g.dt}
	return name
}

// intInput adds an int64 input fed with vals.
func (g *testGraph) intInput(name string, dims []int64, vals []int64) string {
	g.declare(name, dtype.Int64, dims)
	g.feeds[name] = &feed{dims: dims, i: vals, elem: dtype.Int64}
	return name
}

// ints adds an int64 initializer.
func (g *testGraph) ints(dims []int64, vals ...int64) string {
	g.n++
	name := fmt.Sprintf("const_%d", g.n)
	g.m.AddInitializer(graph.NewInt64Tensor(name, dims, vals))
	return name
}

// floats adds a float initializer of the graph's element type.
func (g *testGraph) floats(dims []int64, vals ...float64) string {
	g.n++
	name := fmt.Sprintf("const_%d", g.n)
	g.m.AddInitializer(graph.NewFloatTensor(name, g.dt, dims, vals))
	return name
}

// randFloats adds a random float initializer.
func (g *testGraph) randFloats(dims []int64, gen func(*rand.Rand) float64) string {
	if gen == nil {
		gen = uniform(-1, 1)
	}
	v := make([]float64, graph.NumElements(dims))
	for i := range v {
		v[i] = gen(g.rng)
	}
	return g.floats(dims, v...)
}

// node adds a default-domain node with one output.
func (g *testGraph) node(op string, inputs []string, attrs ...*onnxpb.AttributeProto) string {
	return g.nodeN("", op, inputs, 1, attrs...)[0]
}

// nodeN adds a node with nout outputs.
func (g *testGraph) nodeN(domain, op string, inputs []string, nout int, attrs ...*onnxpb.AttributeProto) []string {
	g.n++
	outs := make([]string, nout)
	for i := range outs {
		outs[i] = fmt.Sprintf("%s_%d_out%d", op, g.n, i)
	}
	g.m.AddNode(&onnxpb.NodeProto{OpType: op, Domain: domain, Name: fmt.Sprintf("%s_%d", op, g.n), Input: inputs, Output: outs, Attribute: attrs})
	return outs
}

func (g *testGraph) tensors(skip string, delta float64, at int) map[string]*rt.Tensor {
	out := map[string]*rt.Tensor{}
	for name, f := range g.feeds {
		var x *rt.Tensor
		var err error
		switch {
		case f.elem == dtype.Bool:
			b := make([]bool, len(f.i))
			for i, v := range f.i {
				b[i] = v != 0
			}
			x, err = rt.NewBool(f.dims, b)
		case f.i != nil:
			x, err = rt.NewInt64(f.dims, f.i)
		case f.elem == dtype.Float64:
			v := append([]float64(nil), f.f...)
			if name == skip {
				v[at] += delta
			}
			x, err = rt.NewFloat64(f.dims, v)
		default:
			v := make([]float32, len(f.f))
			for i, y := range f.f {
				v[i] = float32(y)
			}
			if name == skip {
				v[at] += float32(delta)
			}
			if f.elem == dtype.Float16 {
				x, err = rt.NewFloat16FromFloat32(f.dims, v)
			} else {
				x, err = rt.NewFloat32(f.dims, v)
			}
		}
		if err != nil {
			g.t.Fatal(err)
		}
		out[name] = x
	}
	return out
}

func (g *testGraph) session(m *graph.Model) *rt.Session {
	g.t.Helper()
	b, err := m.Marshal()
	if err != nil {
		g.t.Fatal(err)
	}
	opts := []rt.Option{rt.WithIntraOpThreads(1), rt.WithInterOpThreads(1)}
	if g.dt == dtype.Float64 {
		// ONNX Runtime's extended optimizations fuse Transpose+MatMul into
		// com.microsoft FusedMatMul, which has no float64 kernel.
		opts = append(opts, rt.WithOptimizationLevel(rt.OptimizeBasic))
	}
	s, err := rt.NewSessionFromBytes(b, opts...)
	if err != nil {
		if dir := os.Getenv("AUTODIFF_DUMP"); dir != "" {
			_ = os.WriteFile(filepath.Join(dir, "failed.onnx"), b, 0o644)
		}
		g.t.Fatalf("session: %v", err)
	}
	g.t.Cleanup(func() { s.Close() })
	return s
}

// tolerance of a gradient check in an element type.
type tolerance struct {
	h, atol, rtol float64
}

var (
	tol64 = tolerance{h: 1e-6, atol: 1e-6, rtol: 1e-5}
	// float32: the loss carries ~1e-7 relative rounding, so h must be large
	// and the truncation error of h² stays visible; an actual error in a
	// rule is of the size of the gradient itself.
	tol32 = tolerance{h: 1e-2, atol: 2e-3, rtol: 2e-2}
)

// maxProbes bounds the elements of each param that are perturbed.
const maxProbes = 40

// check appends the random projection loss to y, builds the gradients and
// compares them with finite differences. It returns the training model.
func (g *testGraph) check(y string) *graph.Model {
	g.t.Helper()
	// Find y's shape by running the forward.
	probe := g.m.Clone()
	out := graph.TensorInfo(y, g.dt, nil)
	out.Type.GetTensorType().Shape = nil
	probe.AddOutput(out)
	feeds := g.tensors("", 0, 0)
	for name := range feeds {
		if probe.Input(name) == nil {
			delete(feeds, name) // a param still held as an initializer
		}
	}
	res, err := g.session(probe).Run(feeds, []string{y})
	if err != nil {
		g.t.Fatalf("forward: %v", err)
	}
	ydims := res[y].Shape()
	r := g.randFloats(ydims, nil)
	prod := g.node("Mul", []string{y, r})
	return g.checkLoss(g.node("ReduceSum", []string{prod}, graph.AttrInt("keepdims", 0)))
}

// checkLoss builds the gradients of the scalar loss and compares them with
// finite differences. It returns the training model.
func (g *testGraph) checkLoss(loss string) *graph.Model {
	g.t.Helper()
	fwd := g.m.Clone()
	fwd.AddOutput(graph.TensorInfo(loss, g.dt, nil))
	for _, p := range g.params {
		// A param held as an initializer is fed instead, as Build arranges.
		if fwd.RemoveInitializer(p) != nil && fwd.Input(p) == nil {
			fwd.AddInput(graph.TensorInfo(p, g.dt, nil))
			fwd.Input(p).Type.GetTensorType().Shape = nil
		}
	}

	before, _ := g.m.Marshal()
	tm, err := Build(g.m, loss, g.params)
	if err != nil {
		g.t.Fatalf("Build: %v", err)
	}
	if after, _ := g.m.Marshal(); string(before) != string(after) {
		g.t.Fatalf("Build changed its input model")
	}
	if dir := os.Getenv("AUTODIFF_DUMP"); dir != "" {
		b, _ := tm.Marshal()
		_ = os.WriteFile(filepath.Join(dir, "train.onnx"), b, 0o644)
	}
	outs := []string{loss}
	for _, p := range g.params {
		outs = append(outs, GradName(p))
	}
	got, err := g.session(tm).Run(g.tensors("", 0, 0), outs)
	if err != nil {
		g.t.Fatalf("training graph: %v", err)
	}
	fs := g.session(fwd)
	lossAt := func(p string, delta float64, at int) float64 {
		res, err := fs.Run(g.tensors(p, delta, at), []string{loss})
		if err != nil {
			g.t.Fatalf("forward: %v", err)
		}
		return res[loss].ToFloat64()[0]
	}
	base := lossAt("", 0, 0)
	if l := got[loss].ToFloat64()[0]; math.Abs(l-base) > 1e-5*(1+math.Abs(base)) {
		g.t.Errorf("loss: training graph gives %g, forward %g", l, base)
	}
	tol := tol64
	if g.dt == dtype.Float32 {
		tol = tol32
	}
	for _, p := range g.params {
		gv := got[GradName(p)]
		f := g.feeds[p]
		if want := f.dims; fmt.Sprint(gv.Shape()) != fmt.Sprint(want) {
			g.t.Errorf("%s: gradient has shape %v, want %v", p, gv.Shape(), want)
			continue
		}
		grad := gv.ToFloat64()
		probes := g.rng.Perm(len(f.f))
		if len(probes) > maxProbes {
			probes = probes[:maxProbes]
		}
		for _, i := range probes {
			h := tol.h * math.Max(1, math.Abs(f.f[i]))
			fd := (lossAt(p, h, i) - lossAt(p, -h, i)) / (2 * h)
			if d := math.Abs(grad[i] - fd); d > tol.atol+tol.rtol*math.Abs(fd) || math.IsNaN(grad[i]) {
				g.t.Errorf("%s[%d]: gradient %.8g, finite difference %.8g (diff %.3g)", p, i, grad[i], fd, d)
			}
		}
	}
	return tm
}

// forModes runs body once per opset and declaration mode. Unranked inputs
// are tried from opset 13 only: before, ReduceSum cannot take computed axes
// and Build refuses (see TestUnrankedBeforeOpset13).
func forModes(t *testing.T, opsets []int64, modes []declMode, body func(t *testing.T, opset int64, mode declMode)) {
	for _, op := range opsets {
		for _, md := range modes {
			if md == declUnranked && op < 13 {
				continue
			}
			t.Run(fmt.Sprintf("opset%d/%s", op, md), func(t *testing.T) { body(t, op, md) })
		}
	}
}

var allModes = []declMode{declStatic, declSymbolic, declUnranked}

func i64s(v ...int64) []int64 { return v }

// TestPrintModel prints the nodes of the model named by AUTODIFF_PRINT: a
// debugging aid, skipped otherwise.
func TestPrintModel(t *testing.T) {
	path := os.Getenv("AUTODIFF_PRINT")
	if path == "" {
		t.Skip("set AUTODIFF_PRINT to a model file")
	}
	m, err := graph.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range m.Graph().Node {
		var attrs []string
		for _, a := range n.Attribute {
			attrs = append(attrs, fmt.Sprintf("%s=%v%v%q", a.Name, a.I, a.Ints, a.S))
		}
		t.Logf("%s %s(%v) -> %v %v", n.Name, n.OpType, n.Input, n.Output, attrs)
	}
}
