package quant_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/quant"
	rt "github.com/peftonnx/peftonnx/runtime"
)

// These tests hold ONNX Runtime's own MatMulNBits kernel to a Go
// dequantize-then-matmul of the same packed blocks: they establish the
// layout (low bits first, [N, k_blocks, blob] blocks, row-aligned packed
// zero points, the default zero point, the scale shapes) against ONNX
// Runtime itself.

// kernelTol bounds max|ORT − Go| / max|Go| for float32 A with
// accuracy_level 0, where ONNX Runtime computes in float32.
const kernelTol = 1e-5

func TestKernelMatchesDequantize(t *testing.T) {
	requireORT(t)
	const m = 5
	type tcase struct {
		bits, block, k, n int
		symmetric, bias   bool
	}
	var cases []tcase
	for _, block := range []int{16, 32, 64, 128} {
		for _, k := range []int{256, 200} { // a multiple of every block size, and not
			for _, sym := range []bool{true, false} {
				for _, bias := range []bool{false, true} {
					cases = append(cases, tcase{4, block, k, 24, sym, bias})
				}
			}
		}
	}
	for _, bits := range []int{2, 8} {
		for _, k := range []int{128, 100} {
			for _, sym := range []bool{true, false} {
				cases = append(cases, tcase{bits, 32, k, 12, sym, true})
			}
		}
	}
	for i, c := range cases {
		name := fmt.Sprintf("bits%d/block%d/K%d/sym=%v/bias=%v", c.bits, c.block, c.k, c.symmetric, c.bias)
		t.Run(name, func(t *testing.T) {
			values := normals(c.k*c.n, 0.05, uint64(i+1))
			w, err := quant.Quantize(values, c.k, c.n, quant.Options{Bits: c.bits, BlockSize: c.block, Symmetric: c.symmetric})
			if err != nil {
				t.Fatal(err)
			}
			deq, err := w.Dequantize()
			if err != nil {
				t.Fatal(err)
			}
			var bias []float32
			if c.bias {
				bias = normals(c.n, 1, uint64(100+i))
			}
			a := normals(m*c.k, 1, uint64(200+i))
			got, err := nbitsCase{w: w, bias: bias}.run(t, a, m)
			if err != nil {
				t.Fatal(err)
			}
			want := refMatMul(a, m, c.k, deq, c.n, bias)
			if e := relMaxErr(got, want); e > kernelTol {
				t.Errorf("ORT's MatMulNBits differs from dequantize-then-matmul by %.3g relative, want ≤ %g", e, kernelTol)
			}
		})
	}
}

// TestKernelForms checks the other forms of the inputs that ONNX Runtime
// 1.24 reads: flat scales and zero points, float zero points, g_idx, a
// node without the bits attribute, and float16 A.
func TestKernelForms(t *testing.T) {
	requireORT(t)
	const m, k, n = 3, 100, 10
	values := normals(k*n, 0.05, 11)
	a := normals(m*k, 1, 12)
	quantize := func(o quant.Options) *quant.Weight {
		t.Helper()
		w, err := quant.Quantize(values, k, n, o)
		if err != nil {
			t.Fatal(err)
		}
		return w
	}
	asym := quantize(quant.Options{Bits: 4, BlockSize: 16})
	floatZP := quantize(quant.Options{Bits: 4, BlockSize: 16})
	floatZP.FloatZeroPoints = make([]float32, len(floatZP.Scales))
	for i := range floatZP.FloatZeroPoints {
		// A zero point off the codes' grid tells (q − z)·s from other forms.
		floatZP.FloatZeroPoints[i] = float32(i%7) + 0.25
	}
	floatZP.ZeroPoints = nil
	withGIdx := func(w *quant.Weight) *quant.Weight {
		w.GIdx = make([]int32, k)
		for i := range w.GIdx {
			w.GIdx[i] = int32((i * 5) % w.KBlocks())
		}
		return w
	}
	gidx := withGIdx(quantize(quant.Options{Bits: 4, BlockSize: 16, Symmetric: true}))
	floatZPGIdx := *floatZP
	withGIdx(&floatZPGIdx)
	half := quantize(quant.Options{Bits: 4, BlockSize: 32, ScaleType: dtype.Float16})

	for _, c := range []struct {
		name string
		nc   nbitsCase
		tol  float64
	}{
		{"flat scales and zero points", nbitsCase{w: asym, flat: true}, kernelTol},
		{"flat scales, symmetric", nbitsCase{w: quantize(quant.Options{Bits: 4, BlockSize: 32, Symmetric: true}), flat: true}, kernelTol},
		{"float zero points", nbitsCase{w: floatZP}, kernelTol},
		{"g_idx", nbitsCase{w: gidx}, kernelTol},
		{"g_idx with float zero points", nbitsCase{w: &floatZPGIdx}, kernelTol},
		{"no bits attribute", nbitsCase{w: asym, omitBits: true}, kernelTol},
		// Float16 A, scales and Y: ORT rounds Y to float16.
		{"float16", nbitsCase{w: half, bias: normals(n, 1, 13)}, 2e-3},
		// accuracy_level 4 quantizes A to int8 per block inside ORT.
		{"accuracy level 4", nbitsCase{w: asym, level: 4}, 2e-2},
	} {
		deq, err := c.nc.w.Dequantize()
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		got, err := c.nc.run(t, a, m)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		want := refMatMul(a, m, k, deq, n, c.nc.bias)
		if e := relMaxErr(got, want); e > c.tol {
			t.Errorf("%s: ORT differs from dequantize-then-matmul by %.3g relative, want ≤ %g", c.name, e, c.tol)
		}
	}
}

// TestKernelIgnoresPackedZeroPointsWithGIdx records why Validate refuses
// g_idx with packed zero points: ONNX Runtime 1.24 then dequantizes every
// block with the default zero point, as if the zero points were absent.
// Should a later ONNX Runtime honour them, this test fails and the refusal
// can go.
func TestKernelIgnoresPackedZeroPointsWithGIdx(t *testing.T) {
	requireORT(t)
	const m, k, n = 3, 96, 10
	values := normals(k*n, 0.05, 21)
	a := normals(m*k, 1, 22)
	w, err := quant.Quantize(values, k, n, quant.Options{Bits: 4, BlockSize: 16})
	if err != nil {
		t.Fatal(err)
	}
	gidx := make([]int32, k)
	for i := range gidx {
		gidx[i] = int32(i / 16) // the blocks' own order
	}
	refused := *w
	refused.GIdx = gidx
	if err := refused.Validate(); err == nil || !strings.Contains(err.Error(), "g_idx with packed zero points") {
		t.Errorf("Validate: got %v, want the refusal of g_idx with packed zero points", err)
	}
	got, err := nbitsCase{w: w, gidx: gidx}.run(t, a, m)
	if err != nil {
		t.Fatal(err)
	}
	asIfAbsent := *w
	asIfAbsent.ZeroPoints = nil
	deq, err := asIfAbsent.Dequantize()
	if err != nil {
		t.Fatal(err)
	}
	if e := relMaxErr(got, refMatMul(a, m, k, deq, n, nil)); e > kernelTol {
		t.Errorf("ORT with g_idx and packed zero points differs from the default zero point by %.3g: it may honour them now", e)
	}
}

// TestKernelRefuses checks that ONNX Runtime 1.24 itself rejects the
// layouts that Layout.Validate refuses, scales in a shape other than
// [N, k_blocks] or [N·k_blocks], and bfloat16 on the CPU.
func TestKernelRefuses(t *testing.T) {
	requireORT(t)
	const m, k, n = 2, 96, 4
	w, err := quant.Quantize(normals(k*n, 1, 31), k, n, quant.Options{Bits: 4, BlockSize: 32, Symmetric: true})
	if err != nil {
		t.Fatal(err)
	}
	// relayout gives B the shape that bits and block size call for.
	relayout := func(g *graph.Model, bits, block int) {
		node := g.Graph().Node[0]
		graph.SetAttr(node, graph.AttrInt("bits", int64(bits)))
		graph.SetAttr(node, graph.AttrInt("block_size", int64(block)))
		kb := (k + block - 1) / block
		b := g.Initializer(node.Input[quant.InputB])
		b.Dims = []int64{n, int64(kb), int64(block * bits / 8)}
		b.RawData = make([]byte, n*kb*block*bits/8)
		s := g.Initializer(node.Input[quant.InputScales])
		s.Dims = []int64{n, int64(kb)}
		s.RawData = make([]byte, 4*n*kb)
	}
	for _, test := range []struct {
		reason string
		edit   func(g *graph.Model)
		want   string // in ONNX Runtime's message
	}{
		{"3 bits", func(g *graph.Model) { relayout(g, 3, 32) }, "Only 2b, 4b and 8b"},
		{"block size 8", func(g *graph.Model) { relayout(g, 4, 8) }, "block_size must be a power of 2, and >= 16"},
		{"block size 48", func(g *graph.Model) { relayout(g, 4, 48) }, "block_size must be a power of 2, and >= 16"},
		{"scales [k_blocks, N]", func(g *graph.Model) { g.Initializer("w_scales").Dims = []int64{int64(w.KBlocks()), n} }, "{12} or {4,3}"},
		// The CPU provider has no bfloat16 kernel: package quantize skips
		// bfloat16 layers for this reason.
		{"bfloat16", nil, "Could not find an implementation for MatMulNBits"},
	} {
		var g *graph.Model
		if test.edit == nil {
			w16, err := quant.Quantize(normals(k*n, 1, 31), k, n, quant.Options{ScaleType: dtype.BFloat16})
			if err != nil {
				t.Fatal(err)
			}
			g = nbitsCase{w: w16}.model(t)
		} else {
			g = nbitsCase{w: w}.model(t)
			test.edit(g)
		}
		b, err := g.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		err = runBytes(b, normals(m*k, 1, 32), []int64{m, k})
		if err == nil || !strings.Contains(err.Error(), test.want) {
			t.Errorf("%s: got %v, want ONNX Runtime's error containing %q", test.reason, err, test.want)
		}
	}
}

// runBytes runs a serialized float32 model with one input A.
func runBytes(b []byte, a []float32, shape []int64) error {
	s, err := rt.NewSessionFromBytes(b, rt.WithIntraOpThreads(1))
	if err != nil {
		return err
	}
	defer s.Close()
	x, err := rt.NewFloat32(shape, a)
	if err != nil {
		return err
	}
	_, err = s.Run(map[string]*rt.Tensor{"A": x}, nil)
	return err
}
