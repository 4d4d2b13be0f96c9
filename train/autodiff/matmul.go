package autodiff

import (
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

// Matrix products: MatMul with numpy broadcasting of batch dims, and Gemm.

func init() {
	register("", "MatMul", entry{grad: gradMatMul, infer: inferMatMul, product: func(n *onnxpb.NodeProto) bool { return true }})
	register("", "Gemm", entry{grad: gradGemm, infer: inferGemm, product: func(n *onnxpb.NodeProto) bool {
		return graph.IntAttr(n, "transA", 0) == 0
	}})
	register("com.microsoft", "FusedMatMul", entry{decompose: decomposeFusedMatMul, infer: inferFusedMatMul})
}

// inferFusedMatMul: the MatMul of A and B with their last two axes swapped
// where transA and transB say.
func inferFusedMatMul(f *inferer, n *onnxpb.NodeProto) []*tinfo {
	a, b := f.in(n, 0).shape, f.in(n, 1).shape
	swap := func(s shape, attr string) shape {
		if graph.IntAttr(n, attr, 0) == 0 || s.rank() < 2 {
			return s
		}
		d := append([]dim(nil), s.dims...)
		d[len(d)-2], d[len(d)-1] = d[len(d)-1], d[len(d)-2]
		return rankShape(d...)
	}
	return one(&tinfo{elem: f.in(n, 0).elem, shape: f.matmul(swap(a, "transA"), swap(b, "transB"))})
}

// decomposeFusedMatMul writes com.microsoft FusedMatMul, what ONNX
// Runtime's extended optimizations make of Transpose + MatMul + Mul and
// save into optimized models, as alpha·op(A)·op(B), op swapping the last
// two axes where transA or transB is set. transBatchA and transBatchB are
// refused.
func decomposeFusedMatMul(e *emitter, n *onnxpb.NodeProto) {
	a, b := n.Input[0], n.Input[1]
	if graph.IntAttr(n, "transBatchA", 0) != 0 || graph.IntAttr(n, "transBatchB", 0) != 0 {
		e.fail("transBatchA and transBatchB are not supported")
		return
	}
	swap := func(x, attr string) string {
		if graph.IntAttr(n, attr, 0) == 0 {
			return x
		}
		r := e.shape(x).rank()
		if r < 2 {
			e.fail("the rank of %q must be known to transpose it", x)
			return x
		}
		return e.transpose(x, swapLast(r)...)
	}
	y := e.op("MatMul", []string{swap(a, "transA"), swap(b, "transB")})
	if alpha := float64(graph.FloatAttr(n, "alpha", 1)); alpha != 1 {
		y = e.mul(y, e.scalar(alpha, e.typeOf(a)))
	}
	e.identityTo(y, n.Output[0])
}

func inferMatMul(f *inferer, n *onnxpb.NodeProto) []*tinfo {
	return one(&tinfo{elem: f.in(n, 0).elem, shape: f.matmul(f.in(n, 0).shape, f.in(n, 1).shape)})
}

// inferGemm: [M, N] from 2-D A and B, either transposed.
func inferGemm(f *inferer, n *onnxpb.NodeProto) []*tinfo {
	a, b := f.in(n, 0).shape, f.in(n, 1).shape
	s := unknownShape()
	if a.rank() == 2 && b.rank() == 2 {
		m, k := a.dims[0], b.dims[1]
		if graph.IntAttr(n, "transA", 0) != 0 {
			m = a.dims[1]
		}
		if graph.IntAttr(n, "transB", 0) != 0 {
			k = b.dims[0]
		}
		s = rankShape(m, k)
	}
	return one(&tinfo{elem: f.in(n, 0).elem, shape: s})
}

// swapLast returns the perm that swaps the last two axes of a rank-r
// tensor.
func swapLast(r int) []int64 {
	perm := make([]int64, r)
	for i := range perm {
		perm[i] = int64(i)
	}
	perm[r-2], perm[r-1] = perm[r-1], perm[r-2]
	return perm
}

// gradMatMul: for Y = A·B, dA = dY·Bᵀ and dB = Aᵀ·dY, summed over the
// batch dims that were broadcast. A 1-D operand is a row (A) or a column
// (B) whose unit axis is dropped from Y; the rule puts it back.
func gradMatMul(e *emitter, n *onnxpb.NodeProto, dy []string, need []bool) []string {
	a, b, g := n.Input[0], n.Input[1], dy[0]
	ra, rb := e.shape(a).rank(), e.shape(b).rank()
	if ra < 1 || rb < 1 {
		e.fail("the ranks of %q and %q must be known", a, b)
		return nil
	}
	a2, b2 := a, b
	if rb == 1 {
		g = e.unsqueeze(g, -1)
		b2 = e.unsqueeze(b, 1)
	}
	if ra == 1 {
		g = e.unsqueeze(g, -2)
		a2 = e.unsqueeze(a, 0)
	}
	out := make([]string, 2)
	if need[0] {
		var ga string
		if rb == 2 && ra >= 2 {
			// The common x[..., k]·W[k, n]: dY·Wᵀ as one Gemm with transB
			// over the rows of dY, so that W is read where it is. A
			// Transpose of a frozen W would be folded by ONNX Runtime
			// into a second, transposed copy of every weight.
			// The shape of dA is dY's with the last dim k: taking it from
			// dY, which is live here anyway, rather than from A keeps a
			// Shape(A) from holding A alive until the backward pass.
			if ra == 2 {
				ga = e.op("Gemm", []string{g, b}, graph.AttrInt("transB", 1))
			} else {
				g2d := e.op("Reshape", []string{g, e.concatInts(e.ints(-1), e.dimOf(b, 1))})
				lead := e.op("Slice", []string{e.shapeOf(g), e.ints(0), e.ints(-1)})
				ga = e.op("Reshape", []string{e.op("Gemm", []string{g2d, b}, graph.AttrInt("transB", 1)), e.concatInts(lead, e.dimOf(b, 0))})
			}
			e.inf.setShape(ga, e.shape(a))
		} else {
			ga = e.op("MatMul", []string{g, e.transpose(b2, swapLast(max(rb, 2))...)})
			ga = e.unbroadcast(ga, a2)
		}
		if ra == 1 {
			ga = e.squeeze(ga, 0)
		}
		out[0] = ga
	}
	if need[1] {
		var gb string
		if rb == 2 && ra > 2 {
			// The common x[..., k]·W[k, n]: fold the batch dims into rows so
			// that one Gemm sums over them.
			k := e.dimOf(a, -1)
			nn := e.dimOf(b, 1)
			a2d := e.op("Reshape", []string{a, e.concatInts(e.ints(-1), k)})
			g2d := e.op("Reshape", []string{g, e.concatInts(e.ints(-1), nn)})
			gb = e.op("Gemm", []string{a2d, g2d}, graph.AttrInt("transA", 1))
		} else {
			gb = e.op("MatMul", []string{e.transpose(a2, swapLast(max(ra, 2))...), g})
			gb = e.unbroadcast(gb, b2)
		}
		if rb == 1 {
			gb = e.squeeze(gb, 1)
		}
		out[1] = gb
	}
	return out
}

// concatInts joins 1-D int64 tensors, folding constants.
func (e *emitter) concatInts(parts ...string) string {
	var vals []int64
	for _, p := range parts {
		v, ok := staticVals(e.inf.get(p).vals)
		if !ok || e.m.Initializer(p) == nil {
			return e.op("Concat", parts, graph.AttrInt("axis", 0))
		}
		vals = append(vals, v...)
	}
	return e.ints(vals...)
}

// gradGemm: Y = α·A'·B' + β·C with A' = A or Aᵀ (transA) and B' likewise.
func gradGemm(e *emitter, n *onnxpb.NodeProto, dy []string, need []bool) []string {
	a, b, g := n.Input[0], n.Input[1], dy[0]
	alpha := graph.FloatAttr(n, "alpha", 1)
	beta := float64(graph.FloatAttr(n, "beta", 1))
	ta, tb := graph.IntAttr(n, "transA", 0) != 0, graph.IntAttr(n, "transB", 0) != 0
	flag := func(v bool) int64 {
		if v {
			return 1
		}
		return 0
	}
	gemm := func(x, y string, tx, ty bool) string {
		attrs := []*onnxpb.AttributeProto{graph.AttrInt("transA", flag(tx)), graph.AttrInt("transB", flag(ty))}
		if alpha != 1 {
			attrs = append(attrs, graph.AttrFloat("alpha", alpha))
		}
		return e.op("Gemm", []string{x, y}, attrs...)
	}
	out := make([]string, len(n.Input))
	if need[0] {
		if !ta {
			out[0] = gemm(g, b, false, !tb) // α·dY·B'ᵀ
		} else {
			out[0] = gemm(b, g, tb, true) // (α·dY·B'ᵀ)ᵀ = α·B'·dYᵀ
		}
	}
	if need[1] {
		if !tb {
			out[1] = gemm(a, g, !ta, false) // α·A'ᵀ·dY
		} else {
			out[1] = gemm(g, a, true, ta) // (α·A'ᵀ·dY)ᵀ = α·dYᵀ·A'
		}
	}
	if len(need) > 2 && need[2] {
		gc := g
		if beta != 1 {
			gc = e.mul(g, e.scalar(beta, e.typeOf(g)))
		}
		out[2] = e.unbroadcast(gc, n.Input[2])
	}
	return out
}

func (f *inferer) matmul(a, b shape) shape {
	if !a.ok || !b.ok || a.rank() == 0 || b.rank() == 0 {
		return unknownShape()
	}
	ad, bd := a.dims, b.dims
	if len(ad) == 1 {
		ad = []dim{known(1), ad[0]}
	}
	if len(bd) == 1 {
		bd = []dim{bd[0], known(1)}
	}
	batch := f.broadcast(rankShape(ad[:len(ad)-2]...), rankShape(bd[:len(bd)-2]...))
	dims := batch.dims
	if a.rank() > 1 {
		dims = append(dims, ad[len(ad)-2])
	}
	if b.rank() > 1 {
		dims = append(dims, bd[len(bd)-1])
	}
	return rankShape(dims...)
}
