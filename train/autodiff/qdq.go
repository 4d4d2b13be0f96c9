package autodiff

import (
	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

// QDQ int8 models (ONNX Runtime's quantizer): QuantizeLinear and
// DequantizeLinear have inference but no gradient (an integer value
// carries none). Where an activation's QuantizeLinear → DequantizeLinear
// pair lies on a gradient path, straightThrough writes the pair out in
// float ops in the training graph, (clip(round(x/s) + zp, lo, hi) − zp)·s,
// the same values, whose gradient is the straight-through estimator of
// quantization-aware training: dy where x/s + zp rounds inside [lo, hi],
// else 0. So LoRA factors before a quantized activation train too.

func init() {
	register("", "QuantizeLinear", entry{infer: inferQuantize})
	register("", "DequantizeLinear", entry{infer: inferDequantize})
}

// inferQuantize: x's shape, in the zero point's type (uint8 without one).
func inferQuantize(f *inferer, n *onnxpb.NodeProto) []*tinfo {
	elem := dtype.Uint8
	if len(n.Input) > 2 && n.Input[2] != "" {
		if zp := f.in(n, 2); zp.elem != dtype.Undefined {
			elem = zp.elem
		}
	}
	if to := graph.IntAttr(n, "output_dtype", 0); to != 0 {
		elem = dtype.Type(to)
	}
	return one(&tinfo{elem: elem, shape: f.in(n, 0).shape})
}

// inferDequantize: x's shape, in the scale's type.
func inferDequantize(f *inferer, n *onnxpb.NodeProto) []*tinfo {
	return one(&tinfo{elem: f.in(n, 1).elem, shape: f.in(n, 0).shape})
}

// quantRange returns the range of an integer quantization type.
func quantRange(dt dtype.Type) (lo, hi float64, ok bool) {
	switch dt {
	case dtype.Uint8:
		return 0, 255, true
	case dtype.Int8:
		return -128, 127, true
	case dtype.Uint16:
		return 0, 65535, true
	case dtype.Int16:
		return -32768, 32767, true
	}
	return 0, 0, false
}

// straightThrough replaces each DequantizeLinear that reads a
// QuantizeLinear of a value that requires a gradient, both per tensor, by
// the fake quantization described above. It reports whether it changed
// the graph.
func (b *gradientPass) straightThrough() bool {
	changed := false
	e := newEmitter(b.m, b.inf, b.opset)
	for _, d := range b.nodes {
		if key(d.Domain, d.OpType) != key("", "DequantizeLinear") || len(d.Input) < 2 {
			continue
		}
		q := b.m.Producer(d.Input[0])
		if q == nil || key(q.Domain, q.OpType) != key("", "QuantizeLinear") || len(q.Input) < 2 || !b.rg[q.Input[0]] {
			continue
		}
		qt := b.inf.get(q.Output[0]).elem
		lo, hi, ok := quantRange(qt)
		if !ok || !b.scalar(q.Input[1]) || !b.scalar(d.Input[1]) {
			continue
		}
		x := q.Input[0]
		dt := e.typeOf(x)
		e.scope = "straight_through/" + nodeScope(d)
		t := e.op("Round", []string{e.div(x, e.cast(q.Input[1], dt))})
		if zp := inputOr(q, 2); zp != "" {
			t = e.add(t, e.cast(zp, dt))
		}
		t = e.op("Clip", []string{t, e.scalar(lo, dt), e.scalar(hi, dt)})
		if zp := inputOr(d, 2); zp != "" {
			t = e.sub(t, e.cast(zp, dt))
		}
		y := e.cast(e.mul(t, e.cast(d.Input[1], dt)), b.inf.get(d.Input[1]).elem)
		b.m.RemoveNodes(d)
		e.identityTo(y, d.Output[0])
		changed = true
	}
	return changed
}

// scalar reports whether v is known to hold one element.
func (b *gradientPass) scalar(v string) bool {
	s := b.inf.get(v).shape
	return s.ok && s.numel() == 1
}
