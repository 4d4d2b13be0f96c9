package autodiff

import (
	"fmt"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
	"github.com/peftonnx/peftonnx/quant"
)

// com.microsoft MatMulNBits, the int4 (2-, 8-bit) linear layer of the
// onnxruntime-genai model builder's quantized models: Y = A·W (+ bias)
// with W held block-quantized (see package quant for the layout). The
// packed weight is frozen: the rule passes the gradient on to A (and to
// the bias), and the weight stays packed, bit for bit.

func init() {
	register("com.microsoft", "MatMulNBits", entry{grad: gradMatMulNBits, diff: []int{0, 5}, infer: inferMatMulNBits})
}

// inferMatMulNBits: A's shape with the last dim N.
func inferMatMulNBits(f *inferer, n *onnxpb.NodeProto) []*tinfo {
	a := f.in(n, 0)
	s := unknownShape()
	if a.shape.ok && a.shape.rank() > 0 {
		dims := append([]dim(nil), a.shape.dims...)
		dims[len(dims)-1] = known(graph.IntAttr(n, "N", 0))
		s = rankShape(dims...)
	}
	return one(&tinfo{elem: a.elem, shape: s})
}

// gradMatMulNBits: dA = dY·Wᵀ, where Wᵀ [N, K] is the weight dequantized
// in the graph, block by block, for this layer's backward step alone: no
// float copy of the frozen weights is kept, and the packed tensors are
// read, not changed. A wide layer (lm_head) is dequantized a slab of
// output rows at a time, dA summed over the slabs, each slab after the
// one before (see dequantizeNBits), so that at most chunkElems floats of
// its weight exist at once. dbias = dY summed to [N].
func gradMatMulNBits(e *emitter, n *onnxpb.NodeProto, dy []string, need []bool) []string {
	l, err := quant.LayoutOf(n)
	if err != nil {
		e.fail("%v", err)
		return nil
	}
	if inputOr(n, 4) != "" {
		e.fail("g_idx (act-order) weights are not supported")
		return nil
	}
	g := dy[0]
	out := make([]string, len(n.Input))
	if need[0] {
		out[0] = e.timesTransposedNBits(n, l, g)
		e.inf.setShape(out[0], e.shape(n.Input[0]))
	}
	if len(need) > 5 && need[5] {
		out[5] = e.unbroadcast(g, n.Input[5])
	}
	return out
}

// timesTransposedNBits emits g·Wᵀ, g [..., N], for the weight W [K, N]
// of MatMulNBits node n, its rows dequantized a slab at a time (see
// gradMatMulNBits).
func (e *emitter) timesTransposedNBits(n *onnxpb.NodeProto, l quant.Layout, g string) string {
	N, K := int64(l.N), int64(l.K)
	// 1, read from g's shape: it exists once g does.
	one := e.op("Mul", []string{e.op("Div", []string{e.lastDim(g), e.ints(N)}), e.oneAtRunTime()})
	step := max(1, min(N, chunkElems/K))
	var sum string
	for lo := int64(0); lo < N; lo += step {
		hi := min(N, lo+step)
		gi := g
		if lo > 0 || hi < N {
			gi = e.op("Slice", []string{g, e.ints(lo), e.ints(hi), e.ints(-1)})
		}
		part := e.op("MatMul", []string{gi, e.dequantizeNBits(n, l, one, lo, hi)})
		if sum == "" {
			sum = part
		} else {
			sum = e.add(sum, part)
		}
		// The next slab waits for this one: its 1 comes from this
		// product's shape (K/K).
		one = e.op("Mul", []string{e.op("Div", []string{e.lastDim(part), e.ints(K)}), e.oneAtRunTime()})
	}
	return sum
}

// TimesTransposedNBits appends to m the product g·Wᵀ of a float32 [..., N]
// value g by the transposed weight W [K, N] of MatMulNBits node n of m,
// whose A is float32 and whose packed tensors (B, scales, zero points)
// are initializers: the gradient that n's input A gets from g, computed
// as n's backward rule computes it, the weight dequantized in the graph a
// slab of rows at a time and never held whole, the packed tensors only
// read. The new nodes are named scope/…. It returns the [..., K] product.
func TimesTransposedNBits(m *graph.Model, n *onnxpb.NodeProto, g, scope string) (string, error) {
	e, l, err := nbitsEmitter(m, n, scope, g)
	if err != nil {
		return "", err
	}
	return e.done(n, e.timesTransposedNBits(n, l, g))
}

// TimesNBits appends to m the product x·W (+ bias) of a float32 [M, K]
// value x by the weight W [K, N] of MatMulNBits node n of m (A float32,
// the packed tensors initializers): n's output for x, the weight
// dequantized in the graph a slab of its N columns at a time as the
// backward rule does, so that no float copy of it is whole, and no new
// MatMulNBits node has ONNX Runtime keep a pre-packed copy of it. The new
// nodes are named scope/…. It returns the [M, N] product.
func TimesNBits(m *graph.Model, n *onnxpb.NodeProto, x, scope string) (string, error) {
	e, l, err := nbitsEmitter(m, n, scope, x)
	if err != nil {
		return "", err
	}
	y := e.timesNBits(n, l, x)
	if bias := inputOr(n, quant.InputBias); bias != "" {
		y = e.add(y, bias)
	}
	return e.done(n, y)
}

// DequantizeNBitsRows appends to m rows lo … hi−1 of the transposed
// weight Wᵀ [N, K] of MatMulNBits node n of m (A float32, the packed
// tensors initializers) as a [hi−lo, K] float32 value, dequantized in
// the graph as n's backward rule does (see dequantizeNBits). after is a
// [1] int64 value holding 1 that the caller reads from a value the slab
// must wait for (the work before it, so that ONNX Runtime runs it then
// and not sooner); it is multiplied by RunOneInput, so that the slab is
// never folded into an initializer. The new nodes are named scope/….
func DequantizeNBitsRows(m *graph.Model, n *onnxpb.NodeProto, after string, lo, hi int64, scope string) (string, error) {
	e, l, err := nbitsEmitter(m, n, scope)
	if err != nil {
		return "", err
	}
	if lo < 0 || hi > int64(l.N) || lo >= hi {
		return "", fmt.Errorf("MatMulNBits %s: rows %d…%d of %d", n.Name, lo, hi-1, l.N)
	}
	e.inf.record(after, tinfo{elem: dtype.Int64, shape: rankShape(known(1))})
	one := e.op("Mul", []string{after, e.oneAtRunTime()})
	return e.done(n, e.dequantizeNBits(n, l, one, lo, hi))
}

// nbitsEmitter returns an emitter that adds to m under scope, knowing
// MatMulNBits node n's packed tensors and, as float32, its input A, its
// bias and values, and n's layout.
func nbitsEmitter(m *graph.Model, n *onnxpb.NodeProto, scope string, values ...string) (*emitter, quant.Layout, error) {
	l, err := quant.LayoutOf(n)
	if err != nil {
		return nil, l, err
	}
	if inputOr(n, quant.InputGIdx) != "" {
		return nil, l, fmt.Errorf("MatMulNBits %s: g_idx (act-order) weights are not supported", n.Name)
	}
	inf := newInferer(m)
	for _, v := range append([]string{n.Input[quant.InputA]}, values...) {
		inf.record(v, tinfo{elem: dtype.Float32, shape: unknownShape()})
	}
	for _, i := range []int{quant.InputB, quant.InputScales, quant.InputZeroPoints} {
		v := inputOr(n, i)
		if v == "" {
			continue
		}
		t := m.Initializer(v)
		if t == nil {
			return nil, l, fmt.Errorf("MatMulNBits %s: input %d (%s) is not an initializer", n.Name, i, v)
		}
		inf.record(v, *inf.fromTensor(t))
	}
	if bias := inputOr(n, quant.InputBias); bias != "" {
		inf.record(bias, tinfo{elem: dtype.Float32, shape: rankShape(known(int64(l.N)))})
	}
	e := newEmitter(m, inf, m.Opset(""))
	e.scope = scope
	return e, l, nil
}

// done returns v, or the error that e met while emitting for n.
func (e *emitter) done(n *onnxpb.NodeProto, v string) (string, error) {
	if e.err != nil {
		return "", fmt.Errorf("MatMulNBits %s: %w", n.Name, e.err)
	}
	return v, nil
}

// timesNBits emits x·W, x [M, K], for the weight W [K, N] of MatMulNBits
// node n: for each slab of W's columns (rows of Wᵀ, see dequantizeNBits),
// Gemm(x, slab, transB), the slabs' products concatenated to [M, N], each
// slab after the one before (see timesTransposedNBits).
func (e *emitter) timesNBits(n *onnxpb.NodeProto, l quant.Layout, x string) string {
	N, K := int64(l.N), int64(l.K)
	one := e.op("Mul", []string{e.op("Div", []string{e.lastDim(x), e.ints(K)}), e.oneAtRunTime()})
	step := max(1, min(N, chunkElems/K))
	var parts []string
	for lo := int64(0); lo < N; lo += step {
		hi := min(N, lo+step)
		part := e.op("Gemm", []string{x, e.dequantizeNBits(n, l, one, lo, hi)}, graph.AttrInt("transB", 1))
		parts = append(parts, part)
		one = e.op("Mul", []string{e.op("Div", []string{e.lastDim(part), e.ints(hi - lo)}), e.oneAtRunTime()})
	}
	if len(parts) == 1 {
		return parts[0]
	}
	return e.op("Concat", parts, graph.AttrInt("axis", -1))
}

// chunkElems bounds the floats of one MatMulNBits weight that the
// backward pass dequantizes at once (16 MiB in float32); a variable for
// the tests.
var chunkElems int64 = 1 << 22

// lastDim returns v's last dim as a [1] int64 tensor read from Shape(v)
// at run time.
func (e *emitter) lastDim(v string) string {
	return e.op("Gather", []string{e.op("Shape", []string{v}), e.ints(-1)}, graph.AttrInt("axis", 0))
}

// dequantizeNBits emits output rows lo … hi−1 of the weight of
// MatMulNBits node n as a [hi−lo, K] float tensor of A's type (Wᵀ's rows):
// codes unpacked low bits first (see unpackCodes), minus the zero points
// (2^(bits−1) without a zero_points input; packed uint8 ones are unpacked
// likewise, float ones read as they are), times the scales, the padding
// of the last block cut off. The packed tensors are first reshaped to
// [N·one, …], where one is a [1] int64 tensor holding 1 that is known
// only at run time (it reads RunOneInput and the gradient): ONNX Runtime
// then cannot fold the dequantization into a resident float initializer
// when the session starts, nor run it before the backward pass reaches
// the layer.
//
// For float32 A with uint8 or no zero points, from opset 13 on, one
// per-axis DequantizeLinear of the uint8 codes as [rows·KBlocks,
// BlockSize] does the subtraction and the product in a single pass:
// ONNX Runtime's CPU kernel computes float(q − z)·s, the value that
// package quant's (float(q) − float(z))·s is (both differences are
// exact). Otherwise the codes are cast to A's type once and the zero
// points subtracted and the scales multiplied as float ops.
func (e *emitter) dequantizeNBits(n *onnxpb.NodeProto, l quant.Layout, one string, lo, hi int64) string {
	dt := e.typeOf(n.Input[0])
	kb, block := int64(l.KBlocks()), int64(l.BlockSize)
	// The slab's row count, read from one like every shape here: with
	// constant targets, ONNX Runtime 1.24's reshape fusion breaks the
	// graph it rewrites.
	rows := e.op("Mul", []string{e.ints(hi - lo), one})
	// slab returns rows lo … hi−1 of packed input x as [rows, …].
	slab := func(x string) string {
		v := e.op("Reshape", []string{x, e.concatInts(e.op("Mul", []string{e.ints(int64(l.N)), one}), e.ints(-1))})
		if lo == 0 && hi == int64(l.N) {
			return v
		}
		return e.op("Slice", []string{v, e.ints(lo), e.ints(hi), e.ints(0)})
	}
	codes := e.unpackCodes(slab(n.Input[quant.InputB]), rows, l.Bits) // [rows, kb·block]
	zp := inputOr(n, quant.InputZeroPoints)
	// zeroPoints returns the uint8 zero points, unpacked, as [rows, kb].
	zeroPoints := func() string {
		return e.op("Slice", []string{e.unpackCodes(slab(zp), rows, l.Bits), e.ints(0), e.ints(kb), e.ints(1)})
	}
	var w string
	if e.opset >= 13 && dt == dtype.Float32 && (zp == "" || e.typeOf(zp) == dtype.Uint8) {
		blocks := e.op("Mul", []string{rows, e.ints(kb)}) // [1]: rows·kb
		var z string
		if zp == "" {
			z = e.op("Expand", []string{e.bytes([]int64{1}, byte(l.DefaultZeroPoint())), blocks})
		} else {
			z = e.op("Reshape", []string{zeroPoints(), blocks})
		}
		scales := e.cast(e.op("Reshape", []string{slab(n.Input[quant.InputScales]), blocks}), dtype.Float32)
		q := e.op("Reshape", []string{codes, e.concatInts(blocks, e.ints(block))})
		w = e.op("DequantizeLinear", []string{q, scales, z}, graph.AttrInt("axis", 0))
	} else {
		w = e.op("Reshape", []string{e.cast(codes, dt), e.concatInts(rows, e.ints(kb, block))})
		switch {
		case zp == "":
			w = e.sub(w, e.scalar(float64(l.DefaultZeroPoint()), dt))
		case e.typeOf(zp) == dtype.Uint8:
			w = e.sub(w, e.unsqueeze(e.cast(zeroPoints(), dt), -1))
		default:
			w = e.sub(w, e.cast(e.op("Reshape", []string{slab(zp), e.concatInts(rows, e.ints(kb, 1))}), dt))
		}
		w = e.mul(w, e.cast(e.op("Reshape", []string{slab(n.Input[quant.InputScales]), e.concatInts(rows, e.ints(kb, 1))}), dt))
	}
	w = e.op("Reshape", []string{w, e.concatInts(rows, e.ints(kb*block))})
	if int64(l.K) != kb*block {
		w = e.op("Slice", []string{w, e.ints(0), e.ints(int64(l.K)), e.ints(1)})
	}
	return w
}

// RunOneInput names the [1] int64 graph input, 1 by default, that a
// training graph gets where a backward step makes a tensor from frozen
// initializers alone (MatMulNBits' dequantized weight): such a tensor
// reads it, so that ONNX Runtime computes it in each run, and frees it
// after, instead of folding it into an initializer held for the life of
// the session. It is never fed.
const RunOneInput = "autodiff/one_at_run_time"

// oneAtRunTime returns RunOneInput, adding it on first use.
func (e *emitter) oneAtRunTime() string {
	if e.runOne == "" {
		if e.m.Input(RunOneInput) != nil {
			e.runOne = RunOneInput
		} else {
			e.runOne = e.b.InputWithDefault(RunOneInput, graph.NewInt64Tensor("", []int64{1}, []int64{1}))
		}
		e.inf.record(e.runOne, tinfo{elem: dtype.Int64, shape: rankShape(known(1))})
	}
	return e.runOne
}
