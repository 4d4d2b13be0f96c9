package rewrite

import (
	"slices"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
)

// StackDoRA is StackLoRA for DoRA adapters too (dora.go): every site also
// takes a stacked gain input G [K, 1, out] (StackedSite.Gain), and row b
// computes
//
//	y[b] = base + (g − 1)·(base − β·C) + g·x[b]·A[k]·B[k],  g = G[k],  k = index[b]
//
// with base the layer's own output and β·C a Gemm's bias, as the
// adapted model of a DoRA adapter computes (g = m/‖V‖, V = α·W + s·A·B).
// A plain LoRA adapter, the base and a free slot are fed a gain of one,
// and their rows compute what StackLoRA's do (bit for bit in float32).
// ‖V‖ is frozen, as it is in a served model: Stacked.Factors computes the
// gain on the host, in float64, from the adapter's factors and the base
// weight, a float32 copy of which the Stacked keeps for every site (as
// much memory again as those weights). The rescaling costs a few nodes
// per site and step over StackLoRA (one Mul of the layer's output, a
// reshape and a gather; more where a Gemm adds a bias). DoRA's limits
// hold for every site: a layer whose weight is quantized or packed
// (MatMulNBits, fused Attention) is refused; name the targets to leave it
// out.
func StackDoRA(m *graph.Model, targets ...string) (*Stacked, error) {
	return stack(m, true, targets)
}

// doraWeight is the base weight of a site of StackDoRA, for the gains of
// the adapters loaded on it: its layer and the weight's values as stored.
type doraWeight struct {
	l    Linear
	vals []float32
}

// doraWeights copies the weight of each of linears, by module.
func doraWeights(m *graph.Model, linears []Linear) (map[string]doraWeight, error) {
	out := map[string]doraWeight{}
	for _, l := range linears {
		if _, ok := out[l.Module]; ok {
			continue
		}
		vals, err := m.Float32s(m.Initializer(l.Weight))
		if err != nil {
			return nil, layerErr(l, "%w", err)
		}
		// A copy: the values may alias the model's bytes, which it may
		// unmap when it closes.
		out[l.Module] = doraWeight{l: l, vals: slices.Clone(vals)}
	}
	return out, nil
}

// gain returns m/‖V‖ per output feature for module key of a DoRA adapter,
// V = α·W + s·A·B with scaling s, in float64, rounded to float32 at the
// end.
func (d doraWeight) gain(cfg *adapter.LoRAConfig, key string, w adapter.LoRAWeights, s float64) ([]float32, error) {
	l := d.l
	mag, err := doraMagnitude(cfg, key, l, w)
	if err != nil {
		return nil, err
	}
	v := scaledWeight(l, d.vals)
	in, out, r := int(l.In), int(l.Out), int(w.A.Shape[1])
	for i := range in {
		row := v[i*out : (i+1)*out]
		for k := range r {
			sa := s * float64(w.A.Data[i*r+k])
			for j, b := range w.B.Data[k*out : (k+1)*out] {
				row[j] += sa * float64(b)
			}
		}
	}
	g, err := doraGains(l, mag, columnNorms(v, in, out))
	if err != nil {
		return nil, err
	}
	out32 := make([]float32, out)
	for j, gj := range g {
		out32[j] = float32(gj)
	}
	return out32, nil
}

// stackedDoRA returns what a site of StackDoRA outputs, as [batch, …, out]
// in the layer's type, given rows, the shape [batch, -1, out], base, the
// layer's output, and d, the LoRA product x·A·B [batch, …, out] in the
// layer's type: with g the row's gathered gain,
//
//	g·(base + d)                        where the node adds no bias
//	base + d + (g − 1)·(base − β·C + d)  where a Gemm adds β·C
//
// both base + (g − 1)·(base − β·C) + g·d, and base + d where g is one.
func stackedDoRA(b *graph.Builder, l Linear, s StackedSite, rows, base, d string) string {
	g := b.Op("Gather", []string{s.Gain, StackedIndexInput}, graph.AttrInt("axis", 0)) // [batch, 1, out]
	if l.DType != dtype.Float32 {
		g = b.Op("Cast", []string{g}, graph.AttrInt("to", int64(l.DType)))
	}
	lora := b.Op("Add", []string{b.Op("Reshape", []string{base, rows}), d})
	nb := unbiased(b, l, base, func(beta float32) string { return b.Scalar(l.DType, float64(beta)) })
	if nb == base {
		return b.Op("Mul", []string{g, lora})
	}
	g1 := b.Op("Sub", []string{g, b.Scalar(l.DType, 1)})
	rescaled := b.Op("Add", []string{b.Op("Reshape", []string{nb, rows}), d})
	return b.Op("Add", []string{lora, b.Op("Mul", []string{g1, rescaled})})
}
