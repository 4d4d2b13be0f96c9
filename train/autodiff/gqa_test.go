package autodiff

import (
	"fmt"
	"math"
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
	rt "github.com/peftonnx/peftonnx/runtime"
)

// int32s adds an int32 initializer.
func (g *testGraph) int32s(dims []int64, vals ...int32) string {
	g.n++
	name := fmt.Sprintf("i32_%d", g.n)
	g.m.AddInitializer(&onnxpb.TensorProto{Name: name, DataType: int32(dtype.Int32), Dims: dims, Int32Data: vals})
	return name
}

// maskedLoss returns ReduceSum(y·R) for a random R [rows, cols] that is 0
// on the rows keep rejects: a loss that reads only the rows an op defines.
func (g *testGraph) maskedLoss(y string, dims []int64, keep func(row int) bool) string {
	rows, cols := int(dims[0]*dims[1]), int(graph.NumElements(dims[2:]))
	r := make([]float64, rows*cols)
	for i := range r {
		if keep(i / cols) {
			r[i] = g.rng.Float64()*2 - 1
		}
	}
	return g.node("ReduceSum", []string{g.node("Mul", []string{y, g.floats(dims, r...)})}, graph.AttrInt("keepdims", 0))
}

// checkForward builds the training graph with y as an extra output (so
// computed by the decomposition) and holds it to y of the fused graph run
// by ONNX Runtime, at the rows keep accepts.
func (g *testGraph) checkForward(loss, y string, dims []int64, keep func(row int) bool, tl float64) {
	g.t.Helper()
	tm, err := Build(g.m, loss, g.params, WithOutputs(y))
	if err != nil {
		g.t.Fatalf("Build: %v", err)
	}
	for _, n := range tm.Graph().Node {
		if n.Domain == "com.microsoft" {
			g.t.Errorf("the training graph keeps %s node %q", n.OpType, n.Name)
		}
	}
	fwd := g.m.Clone()
	fwd.AddOutput(graph.TensorInfo(y, g.dt, nil))
	feeds := g.tensors("", 0, 0)
	want, err := g.session(fwd).Run(feeds, []string{y})
	if err != nil {
		g.t.Fatalf("fused forward: %v", err)
	}
	got, err := g.session(tm).Run(g.tensors("", 0, 0), []string{y})
	if err != nil {
		g.t.Fatalf("decomposed forward: %v", err)
	}
	a, b := got[y].ToFloat64(), want[y].ToFloat64()
	cols := int(graph.NumElements(dims[2:]))
	worst := 0.0
	for i := range a {
		if !keep(i / cols) {
			continue
		}
		d := math.Abs(a[i] - b[i])
		worst = max(worst, d)
		if !(d <= tl*(1+math.Abs(b[i]))) {
			g.t.Errorf("%s[%d]: decomposition %g, ONNX Runtime's kernel %g", y, i, a[i], b[i])
			return
		}
	}
	g.t.Logf("decomposition against the kernel: largest difference %.3g (%d values, first %g vs %g)", worst, len(a), a[0], b[0])
}

type gqaCase struct {
	name                 string
	batch, seq, past     int64
	heads, kvHeads, dim  int64
	seqlens              []int32 // seqlens_k per row
	packed, rotary       bool
	interleaved, partial bool
	window               int64
	softcap, scale       float32
	smooth, sink, bias   bool
	dt                   dtype.Type
}

func TestGroupQueryAttention(t *testing.T) {
	requireORT(t)
	cases := []gqaCase{
		// The first prompt, padded on the right; rows past a row's length are
		// not defined by the kernel and are left out of the loss.
		{name: "prompt_rotary_padded", batch: 2, seq: 4, heads: 4, kvHeads: 2, dim: 16, seqlens: []int32{3, 1}, rotary: true},
		{name: "prompt_packed_interleaved", batch: 2, seq: 3, heads: 2, kvHeads: 1, dim: 16, seqlens: []int32{2, 2}, packed: true, rotary: true, interleaved: true},
		{name: "prompt_partial_rotary", batch: 1, seq: 3, heads: 2, kvHeads: 2, dim: 32, seqlens: []int32{2}, rotary: true, partial: true},
		// A later prompt with a past (batch 1, as the kernel wants).
		{name: "past_packed_rotary", batch: 1, seq: 3, past: 2, heads: 4, kvHeads: 1, dim: 16, seqlens: []int32{4}, packed: true, rotary: true},
		// Token generation: one new token per row, rows of different pasts.
		{name: "decode_ragged_softcap_window", batch: 2, seq: 1, past: 4, heads: 2, kvHeads: 1, dim: 8, seqlens: []int32{4, 2}, softcap: 2, window: 2},
		{name: "decode_rotary_scale", batch: 2, seq: 1, past: 3, heads: 4, kvHeads: 2, dim: 16, seqlens: []int32{3, 3}, rotary: true, scale: 0.3},
		{name: "prompt_window", batch: 1, seq: 5, heads: 2, kvHeads: 1, dim: 8, seqlens: []int32{4}, window: 2},
		{name: "prompt_smooth_softmax", batch: 2, seq: 3, heads: 2, kvHeads: 2, dim: 8, seqlens: []int32{2, 2}, smooth: true},
		{name: "past_head_sink_bias", batch: 1, seq: 2, past: 2, heads: 2, kvHeads: 1, dim: 8, seqlens: []int32{3}, sink: true, bias: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// ONNX Runtime's shape inference of a packed query needs static dims.
			mode := declSymbolic
			if c.packed {
				mode = declStatic
			}
			g := newTestGraph(t, 17, dtype.Float32, mode)
			y, dims, keep, present, pdims := gqaGraph(g, c)
			loss := g.maskedLoss(y, dims, keep)
			if c.past > 0 && c.batch == 1 {
				// present_key feeds the loss too, as it would a next step.
				loss = g.node("Add", []string{loss, g.maskedLoss(present, pdims, func(int) bool { return true })})
			}
			g.checkLoss(loss)
			g.checkForward(loss, y, dims, keep, 1e-5)
		})
	}
}

// TestGroupQueryAttentionFloat16 holds the decomposition of a float16 op
// (scores and softmax in float32, as the kernel) to ONNX Runtime's kernel.
func TestGroupQueryAttentionFloat16(t *testing.T) {
	requireORT(t)
	c := gqaCase{batch: 2, seq: 3, heads: 4, kvHeads: 2, dim: 16, seqlens: []int32{2, 2}, packed: true, rotary: true, dt: dtype.Float16}
	g := newTestGraph(t, 17, dtype.Float16, declStatic)
	y, dims, keep, _, _ := gqaGraph(g, c)
	g.checkForward(g.maskedLoss(y, dims, keep), y, dims, keep, 2e-3)
}

// gqaGraph adds a GroupQueryAttention node for c and returns its output,
// the output's dims, the rows (batch·seq) the kernel defines, and
// present_key with its dims.
func gqaGraph(g *testGraph, c gqaCase) (y string, dims []int64, keep func(int) bool, present string, pdims []int64) {
	B, S, P, H, KV, D := c.batch, c.seq, c.past, c.heads, c.kvHeads, c.dim
	in := make([]string, 12)
	if c.packed {
		in[0] = g.param("qkv", i64s(B, S, (H+2*KV)*D), nil)
	} else {
		in[0] = g.param("q", i64s(B, S, H*D), nil)
		in[1] = g.param("k", i64s(B, S, KV*D), nil)
		in[2] = g.param("v", i64s(B, S, KV*D), nil)
	}
	if P > 0 {
		in[3] = g.param("past_key", i64s(B, KV, P, D), nil)
		in[4] = g.param("past_value", i64s(B, KV, P, D), nil)
	}
	in[5] = g.int32s(i64s(B), c.seqlens...)
	maxTotal := int32(0)
	for _, s := range c.seqlens {
		maxTotal = max(maxTotal, s+1)
	}
	in[6] = g.int32s(nil, maxTotal)
	if c.rotary {
		half := int(D / 2)
		if c.partial {
			half = int(D / 4)
		}
		in[7], in[8] = ropeCaches(g, 16, half)
	}
	if c.bias {
		in[10] = g.randFloats(i64s(1, H, S, P+S), uniform(-1, 0))
	}
	if c.sink {
		in[11] = g.randFloats(i64s(H), nil)
	}
	for len(in) > 0 && in[len(in)-1] == "" {
		in = in[:len(in)-1]
	}
	attrs := []*onnxpb.AttributeProto{graph.AttrInt("num_heads", H), graph.AttrInt("kv_num_heads", KV)}
	if c.rotary {
		attrs = append(attrs, graph.AttrInt("do_rotary", 1))
	}
	if c.interleaved {
		attrs = append(attrs, graph.AttrInt("rotary_interleaved", 1))
	}
	if c.window > 0 {
		attrs = append(attrs, graph.AttrInt("local_window_size", c.window))
	}
	if c.softcap > 0 {
		attrs = append(attrs, graph.AttrFloat("softcap", c.softcap))
	}
	if c.scale > 0 {
		attrs = append(attrs, graph.AttrFloat("scale", c.scale))
	}
	if c.smooth {
		attrs = append(attrs, graph.AttrInt("smooth_softmax", 1))
	}
	outs := g.nodeN("com.microsoft", "GroupQueryAttention", in, 3, attrs...)
	// The rows the kernel defines: in the first prompt, those before the
	// row's length.
	first := S > 1 && P == 0
	keep = func(row int) bool {
		b, s := row/int(S), row%int(S)
		return !first || s <= int(c.seqlens[b])
	}
	return outs[0], i64s(B, S, H*D), keep, outs[1], i64s(B, KV, P+S, D)
}

// TestDecomposeGroupQueryAttention: Decompose writes the op out for a
// forward run that computes what the kernel computes, and runs where the
// kernel refuses to (a past for two rows of two new tokens).
func TestDecomposeGroupQueryAttention(t *testing.T) {
	requireORT(t)
	for _, c := range []gqaCase{
		{name: "prompt", batch: 2, seq: 3, heads: 2, kvHeads: 1, dim: 16, seqlens: []int32{2, 1}, rotary: true},
		{name: "past_for_two_rows", batch: 2, seq: 2, past: 2, heads: 2, kvHeads: 1, dim: 8, seqlens: []int32{3, 3}},
	} {
		t.Run(c.name, func(t *testing.T) {
			g := newTestGraph(t, 17, dtype.Float32, declStatic)
			y, _, keep, _, _ := gqaGraph(g, c)
			g.m.AddOutput(graph.TensorInfo(y, g.dt, nil))
			d, err := Decompose(g.m, "com.microsoft:GroupQueryAttention")
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range d.Graph().Node {
				if n.OpType == "GroupQueryAttention" {
					t.Fatalf("Decompose left %s", n.Name)
				}
			}
			got, err := g.session(d).Run(g.tensors("", 0, 0), []string{y})
			if err != nil {
				t.Fatal(err)
			}
			b, err := g.m.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			s, err := rt.NewSessionFromBytes(b, rt.WithIntraOpThreads(1))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			want, err := s.Run(g.tensors("", 0, 0), []string{y})
			if c.past > 0 {
				// The kernel refuses; the decomposition has run.
				if err == nil {
					t.Errorf("ONNX Runtime's kernel ran a past for two rows of two tokens: the test no longer shows what Decompose is for")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			a, w := got[y].ToFloat64(), want[y].ToFloat64()
			cols := len(a) / int(c.batch*c.seq)
			for i := range a {
				if keep(i/cols) && math.Abs(a[i]-w[i]) > 1e-5 {
					t.Fatalf("%s[%d]: decomposed %g, kernel %g", y, i, a[i], w[i])
				}
			}
		})
	}
}
