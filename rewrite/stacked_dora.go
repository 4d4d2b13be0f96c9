package rewrite

import (
	"encoding/binary"
	"math"
	"sync"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/internal/half"
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
// weight, which it reads each time, one row of V at a time, where m held
// it: the Stacked keeps the sites' weight tensors of m, not a copy of
// their values (a weight in external data is read from the mapped file,
// which stays mapped after m closes, until Stacked.Close, its pages
// resident only while read; an inline one from the bytes m parsed). The
// rescaling costs a few nodes per site and step over StackLoRA (one Mul
// of the layer's output, a reshape and a gather; more where a Gemm adds a
// bias). DoRA's limits hold for every site: a layer whose weight is
// quantized or packed (MatMulNBits, fused Attention) is refused; name the
// targets to leave it out.
func StackDoRA(m *graph.Model, targets ...string) (*Stacked, error) {
	return stack(m, true, targets)
}

// doraSource is where a stack of StackDoRA reads its sites' base weights
// for the gains of the adapters loaded on it: a model that holds those
// weights of the stacked one (graph.Model.KeepInitializers), until Close.
type doraSource struct {
	mu    sync.RWMutex
	m     *graph.Model      // nil once closed
	sites map[string]Linear // by module
}

// newDoRASource keeps the weight of each of linears from m, checking that
// it is a float tensor whose bytes m holds, without reading them.
func newDoRASource(m *graph.Model, linears []Linear) (*doraSource, error) {
	src := &doraSource{sites: map[string]Linear{}}
	var names []string
	for _, l := range linears {
		if _, ok := src.sites[l.Module]; ok {
			continue
		}
		if m.Initializer(l.Weight) == nil {
			return nil, layerErr(l, "use_dora: stacked DoRA adapters need the layer's weight %q as an initializer", l.Weight)
		}
		src.sites[l.Module] = l
		names = append(names, l.Weight)
	}
	src.m = m.KeepInitializers(names...)
	for _, l := range src.sites {
		if _, err := weightValues(src.m, l); err != nil {
			src.m.Close()
			return nil, err
		}
	}
	return src, nil
}

// Close releases what a stack of StackDoRA holds of the model it stacked
// (its sites' weights, and the mapping of their external data file),
// waiting for a Factors call that is reading them; a DoRA adapter's
// Factors after it is an error. A stack of StackLoRA holds nothing; Close
// does nothing on it. Closing twice is safe.
func (st *Stacked) Close() error {
	if st.dora == nil {
		return nil
	}
	st.dora.mu.Lock()
	defer st.dora.mu.Unlock()
	m := st.dora.m
	st.dora.m = nil
	return m.Close()
}

// gain returns m/‖V‖ per output feature for module mod of a DoRA
// adapter (its module key, weights w and scaling s), V = α·W + s·A·B, in
// float64, rounded to float32 at the end. It reads W from the model, one
// row of V at a time, in the order of the whole V's sums (columnNorms),
// and then lets the pages of W's external data go.
func (d *doraSource) gain(mod string, cfg *adapter.LoRAConfig, key string, w adapter.LoRAWeights, s float64) ([]float32, error) {
	l := d.sites[mod]
	mag, err := doraMagnitude(cfg, key, l, w)
	if err != nil {
		return nil, err
	}
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.m == nil {
		return nil, layerErr(l, "use_dora: the stack was closed, and with it the weight %q that the adapter's gains are computed from", l.Weight)
	}
	at, err := weightValues(d.m, l)
	if err != nil {
		return nil, err
	}
	in, out, r := int(l.In), int(l.Out), int(w.A.Shape[1])
	alpha := float64(l.Alpha)
	row := make([]float64, out)
	sq := make([]float64, out)
	for i := range in {
		for j := range row {
			k := i*out + j
			if l.WeightTransposed {
				k = j*in + i
			}
			row[j] = alpha * float64(at(k))
		}
		for k := range r {
			sa := s * float64(w.A.Data[i*r+k])
			for j, b := range w.B.Data[k*out : (k+1)*out] {
				row[j] += sa * float64(b)
			}
		}
		for j, v := range row {
			sq[j] += v * v
		}
	}
	for j := range sq {
		sq[j] = math.Sqrt(sq[j])
	}
	// The pages read leave the resident memory until the next adapter.
	if err := d.m.ReleasePages(d.m.Initializer(l.Weight)); err != nil {
		return nil, layerErr(l, "%w", err)
	}
	g, err := doraGains(l, mag, sq)
	if err != nil {
		return nil, err
	}
	out32 := make([]float32, out)
	for j, gj := range g {
		out32[j] = float32(gj)
	}
	return out32, nil
}

// weightValues returns a reader of layer l's stored weight values, as m
// holds them: value k as float32 (as Float32s converts it), decoded in
// place from the tensor's bytes, without a copy of the tensor.
func weightValues(m *graph.Model, l Linear) (func(k int) float32, error) {
	t := m.Initializer(l.Weight)
	b, err := m.TensorBytes(t)
	if err != nil {
		return nil, layerErr(l, "%w", err)
	}
	le := binary.LittleEndian
	switch dt := graph.TypeOf(t); dt {
	case dtype.Float32:
		return func(k int) float32 { return math.Float32frombits(le.Uint32(b[4*k:])) }, nil
	case dtype.Float16:
		return func(k int) float32 { return half.Float16ToFloat32(le.Uint16(b[2*k:])) }, nil
	case dtype.BFloat16:
		return func(k int) float32 { return half.BFloat16ToFloat32(le.Uint16(b[2*k:])) }, nil
	case dtype.Float64:
		return func(k int) float32 { return float32(math.Float64frombits(le.Uint64(b[8*k:]))) }, nil
	default:
		return nil, layerErr(l, "use_dora: weight %q is %s, not a floating-point type", l.Weight, dt)
	}
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
