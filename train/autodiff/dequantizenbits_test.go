package autodiff

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/quant"
)

// TestDequantizeNBitsBitForBit runs the in-graph dequantization of a slab
// of a MatMulNBits weight in ONNX Runtime and checks each float against
// package quant's Go dequantization bit for bit: in each width, with no,
// packed uint8 and float zero points, with K not a multiple of the block
// size, for a slab inside the weight and for the whole, in each form the
// emitter takes: opset 18 (codes unpacked by BitShift and BitwiseAnd),
// opset 17 (by BitShift alone; both then DequantizeLinear per axis, or
// the float ops for float zero points), opset 12 (BitShift, then float
// ops) and opset 10 (the codes unpacked in float ops).
func TestDequantizeNBitsBitForBit(t *testing.T) {
	requireORT(t)
	const K, N, block = 40, 7, 16
	for _, opset := range []int64{18, 17, 12, 10} {
		for _, bits := range []int{2, 4, 8} {
			for _, zps := range []string{"none", "uint8", "float"} {
				for _, s := range [][2]int64{{2, 6}, {0, N}} {
					name := fmt.Sprintf("opset%d_bits%d_zp_%s_rows%d-%d", opset, bits, zps, s[0], s[1])
					t.Run(name, func(t *testing.T) {
						checkDequantizeNBits(t, opset, bits, zps, K, N, block, s[0], s[1])
					})
				}
			}
		}
	}
}

func checkDequantizeNBits(t *testing.T, opset int64, bits int, zps string, K, N, block int, lo, hi int64) {
	r := rand.New(rand.NewPCG(uint64(opset), uint64(bits)))
	w := make([]float32, K*N)
	for i := range w {
		w[i] = float32(r.NormFloat64())
	}
	qw, err := quant.Quantize(w, K, N, quant.Options{Bits: bits, BlockSize: block, Symmetric: zps == "none"})
	if err != nil {
		t.Fatal(err)
	}
	// Every byte is a valid string of codes: random ones reach each code
	// in each position of a byte.
	for i := range qw.B {
		qw.B[i] = byte(r.Uint32())
	}
	for i := range qw.ZeroPoints {
		qw.ZeroPoints[i] = byte(r.Uint32())
	}
	if zps == "float" {
		qw.FloatZeroPoints = make([]float32, len(qw.Scales))
		for i := range qw.FloatZeroPoints {
			qw.FloatZeroPoints[i] = float32(r.IntN(1<<bits)) + 0.25 // off the codes' grid
		}
		qw.ZeroPoints = nil
	}
	g := newTestGraph(t, opset, dtype.Float32, declStatic)
	names := quant.BuilderNames("layer.weight", bits)
	ts, err := qw.Tensors(names)
	if err != nil {
		t.Fatal(err)
	}
	for _, tp := range ts {
		g.m.AddInitializer(tp)
	}
	a := g.input("a", i64s(1, int64(K)), nil)
	node, err := qw.Node(names, quant.NodeOptions{Name: "layer/MatMulNBits", A: a, Y: "y"})
	if err != nil {
		t.Fatal(err)
	}
	l, err := quant.LayoutOf(node)
	if err != nil {
		t.Fatal(err)
	}
	e, _, err := nbitsEmitter(g.m, node, "/deq")
	if err != nil {
		t.Fatal(err)
	}
	slab, err := e.done(node, e.dequantizeNBits(node, l, e.oneAtRunTime(), lo, hi))
	if err != nil {
		t.Fatal(err)
	}
	ops := map[string]int{}
	for _, n := range g.m.Graph().Node {
		ops[n.OpType]++
	}
	wantDQ := opset >= 13 && zps != "float"
	if (ops["DequantizeLinear"] > 0) != wantDQ || (ops["BitShift"] > 0) != (opset >= 11 && bits < 8) || (ops["BitwiseAnd"] > 0) != (opset >= 18 && bits < 8) || (ops["Floor"] > 0) != (opset < 11 && bits < 8) {
		t.Errorf("ops %v: not the form of opset %d", ops, opset)
	}
	g.m.AddOutput(graph.TensorInfo(slab, dtype.Float32, i64s(hi-lo, int64(K))))
	res, err := g.session(g.m).Run(g.tensors("", 0, 0), []string{slab})
	if err != nil {
		t.Fatal(err)
	}
	got := res[slab].Float32()
	deq, err := qw.Dequantize() // [K, N]
	if err != nil {
		t.Fatal(err)
	}
	rows := int(hi - lo)
	if len(got) != rows*K {
		t.Fatalf("%d values, want %d rows of %d", len(got), rows, K)
	}
	bad := 0
	for i := range rows {
		for k := range K {
			want := deq[k*N+int(lo)+i]
			if v := got[i*K+k]; math.Float32bits(v) != math.Float32bits(want) {
				if bad++; bad <= 5 {
					t.Errorf("row %d, k %d: %v (%08x), want %v (%08x)", int(lo)+i, k, v, math.Float32bits(v), want, math.Float32bits(want))
				}
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d values differ", bad, rows*K)
	}
}
