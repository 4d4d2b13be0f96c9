package rewrite

import (
	"slices"

	"math"

	"github.com/peftonnx/peftonnx/graph/onnxpb"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/quant"
)

// DoRA (weight-decomposed LoRA, HF PEFT's use_dora) splits the adapted
// weight into a direction and a magnitude:
//
//	y = x·W'  with  W'[:, j] = m[j] · V[:, j] / ‖V[:, j]‖,  V = W + s·A·B
//
// W in graph layout [in, out], so column j is output feature j: the norm
// is taken per output feature, over the input features, as HF PEFT's
// torch.linalg.norm(weight, dim=1) of a [out, in] nn.Linear weight. The
// magnitude m [out] ("<module>.lora_magnitude_vector.weight") trains
// with A and B and starts at the column norms of W, so a fresh injection
// computes what the base does. The graph computes, as PEFT does,
//
//	y = base + (m/‖V‖ − 1)·(base − bias) + (m/‖V‖)·s·x·A·B
//
// with base the layer's own output. The norm is detached in training
// (PEFT's weight_norm.detach()): the site records it (Site.DoRANorm), and
// the trainer marks it for autodiff as a stop-gradient value
// (DetachedValues, autodiff.MarkStopGradient). With dropout, the dropped
// activation feeds the LoRA product only; the base term reads x as the
// layer does (PEFT recomputes the base product from the dropped x in
// training; inference is the same).
//
// DoRA takes linear layers (MatMul, Gemm, fused projections), with float
// weights, QDQ weights (the DequantizeLinear's output is the float W the
// norm reads) or int4 MatMulNBits ones (dora_nbits.go: the norm without a
// float W); embeddings, convolutions and AsInputs are refused. Merge into
// a float weight is exact: W' above, stored where W is (a QDQ or int4
// weight becomes float with Dequantize; Requantize rounds W' back into
// int4). A merged DoRA weight does not determine ‖V‖ (any positive
// rescaling of V gives the same W'), so Merge keeps ‖V‖ of each layer in
// the model's metadata, as HF PEFT keeps the weight norm at merge time,
// and Unmerge undoes the rescaling with it (dora_unmerge.go).

// doraSuffix names a module's magnitude initializer, as HF PEFT 0.12 and
// later name its tensor.
const doraSuffix = ".lora_magnitude_vector.weight"

// checkDoRA refuses the layers and options that DoRA does not take.
func checkDoRA(l Linear, asInputs bool) error {
	switch {
	case l.Kind == KindEmbedding || l.Kind == KindConv:
		return layerErr(l, "use_dora: DoRA is built for linear layers only, not %s", articled(l.Kind))
	case asInputs:
		return layerErr(l, "use_dora: DoRA's magnitude rescales by the norm of W + s·A·B, which needs the scaling in the graph; AsInputs folds it into the fed B")
	case l.Op == OpAttention:
		return layerErr(l, "use_dora: DoRA needs the layer's float weight as one matrix; %s packs it", l.Op)
	}
	return nil
}

// initialMagnitude returns the column norms of l's weight as the layer
// computes with it (Gemm's alpha included): DoRA's magnitude at
// injection.
func initialMagnitude(m *graph.Model, l Linear) ([]float32, error) {
	norms, err := weightNorms(m, l)
	if err != nil {
		return nil, err
	}
	out := make([]float32, len(norms))
	for j, n := range norms {
		out[j] = float32(n)
	}
	return out, nil
}

// effectiveWeight returns α·W of layer l in graph layout [in, out], in
// float64: for a QDQ weight, the DequantizeLinear's output.
func effectiveWeight(m *graph.Model, l Linear) ([]float64, error) {
	var vals []float32
	var err error
	if l.Dequantized() {
		vals, err = dequantize(m, l.WeightChain[0])
	} else {
		vals, err = m.Float32s(m.Initializer(l.Weight))
	}
	if err != nil {
		return nil, layerErr(l, "%w", err)
	}
	in, out := int(l.In), int(l.Out)
	w := make([]float64, in*out)
	for i := 0; i < in; i++ {
		for j := 0; j < out; j++ {
			v := vals[i*out+j]
			if l.WeightTransposed {
				v = vals[j*in+i]
			}
			w[i*out+j] = float64(l.Alpha) * float64(v)
		}
	}
	return w, nil
}

// weightNorms returns the Euclidean norm of each output feature (column)
// of α·W, layer l's weight as the layer computes with it, in float64.
func weightNorms(m *graph.Model, l Linear) ([]float64, error) {
	w, err := effectiveWeight(m, l)
	if err != nil {
		return nil, err
	}
	in, out := int(l.In), int(l.Out)
	n := make([]float64, out)
	for i := 0; i < in; i++ {
		for j, v := range w[i*out : (i+1)*out] {
			n[j] += v * v
		}
	}
	for j := range n {
		n[j] = math.Sqrt(n[j])
	}
	return n, nil
}

// doraDelta returns what DoRA adds to the base output base of l, given
// d = s·x·A·B in the layer's type: (m/‖V‖ − 1)·(base − β·C) + (m/‖V‖)·d,
// with p's magnitude m. It adds the magnitude initializer and the norm's
// nodes, and records the norm in the site.
func (b *loraGraph) doraDelta(l Linear, pre *graph.Builder, bFull, base, d string, p *modulePlan) string {
	s := b.site
	m := b.g.Model()
	sd := pre.In("lora_magnitude")
	m.AddInitializer(graph.NewFloat32Tensor(s.Magnitude, s.DType, []int64{s.Out}, p.mag))
	var norm string
	if l.Quantized() {
		norm = b.nbitsNorm(l, sd, bFull, p.normSq)
	} else {
		norm = b.floatNorm(l, sd, bFull)
	}
	s.DoRANorm = norm
	scale := sd.Op("Div", []string{s.Magnitude, norm}) // [1, out]
	if s.DType != l.DType {
		scale = sd.Op("Cast", []string{scale}, graph.AttrInt("to", int64(l.DType)))
	}
	one := b.scalar(s.Module+".lora_magnitude.one", l.DType, 1)
	baseNoBias := base
	if c := inNodeBias(l); c != "" {
		if l.Beta != 1 {
			c = sd.Op("Mul", []string{c, b.scalar(s.Module+".lora_magnitude.beta", l.DType, l.Beta)})
		}
		baseNoBias = sd.Op("Sub", []string{base, c})
	}
	rescaled := sd.Op("Mul", []string{sd.Op("Sub", []string{scale, one}), baseNoBias})
	return sd.Op("Add", []string{rescaled, sd.Op("Mul", []string{scale, d})})
}

// inNodeBias returns the bias that l's node itself adds to its output
// (Gemm's C where β ≠ 0, MatMulNBits' bias input), which DoRA's rescaling
// leaves out, or "".
func inNodeBias(l Linear) string {
	n := l.Node
	switch {
	case l.Op == "Gemm" && len(n.Input) > 2 && n.Input[2] != "" && l.Beta != 0:
		return n.Input[2]
	case l.Quantized() && len(n.Input) > quant.InputBias:
		return n.Input[quant.InputBias]
	}
	return ""
}

// floatNorm returns ‖V[:, j]‖ [1, out] of V = α·W + s·A·B for a layer l
// whose node reads its float weight.
func (b *loraGraph) floatNorm(l Linear, sd *graph.Builder, bFull string) string {
	s := b.site
	// V = α·W + s·A·B in the branch's type, [in, out].
	w := l.Node.Input[1]
	if l.Op == "Gemm" && graph.IntAttr(l.Node, "transB", 0) != 0 {
		w = sd.Op("Transpose", []string{w}, graph.AttrInts("perm", 1, 0))
	}
	if s.DType != l.DType {
		w = sd.Op("Cast", []string{w}, graph.AttrInt("to", int64(s.DType)))
	}
	if l.Alpha != 1 {
		w = sd.Op("Mul", []string{w, b.scalar(s.Module+".lora_magnitude.alpha", s.DType, l.Alpha)})
	}
	ab := sd.Op("MatMul", []string{s.A, bFull})
	if s.Scale != 1 {
		ab = sd.Op("Mul", []string{ab, b.scalar(s.Module+".lora_magnitude.scaling", s.DType, float32(s.Scale))})
	}
	v := sd.Op("Add", []string{w, ab})
	// ‖V[:, j]‖ = √(1ᵀ·(V⊙V)): a MatMul with ones, which every opset has
	// (ReduceSumSquare moved its axes to an input in opset 18).
	ones := make([]float32, s.In)
	for i := range ones {
		ones[i] = 1
	}
	onesName := b.g.Initializer(s.Module+".lora_magnitude.ones", graph.NewFloat32Tensor("", s.DType, []int64{1, s.In}, ones))
	sq := sd.Op("MatMul", []string{onesName, sd.Op("Mul", []string{v, v})})
	return sd.Op("Sqrt", []string{sq})
}

// DetachedValues returns the values of m that training must treat as
// constants: the DoRA norms, which HF PEFT detaches. The trainer marks
// them with autodiff.MarkStopGradient.
func DetachedValues(m *graph.Model) ([]string, error) {
	rec, ok, err := readRecord(m)
	if err != nil || !ok {
		return nil, err
	}
	var out []string
	for _, s := range rec.Sites {
		if s.DoRANorm != "" {
			out = append(out, s.DoRANorm)
		}
	}
	return out, nil
}

// rescaleColumns finishes a DoRA merge: once W holds W + (s/α)·A·B, each
// output feature j of it becomes m[j]·W[:, j]/‖α·W[:, j]‖, so that
// α·W' = m ⊙ V/‖V‖ with V = α·W + s·A·B. It returns ‖V‖ per output
// feature, which Unmerge needs to undo the rescaling (dora_unmerge.go).
func (f fold) rescaleColumns(m *graph.Model) ([]float64, error) {
	norms, err := weightNorms(m, f.l)
	if err != nil {
		return nil, err
	}
	c, err := f.columnScales(norms)
	if err != nil {
		return nil, err
	}
	return norms, scaleColumns(m, f.l, c)
}

// columnScales returns m[j]/‖V[:, j]‖ for the norms of V's columns.
func (f fold) columnScales(norms []float64) ([]float64, error) {
	c := make([]float64, len(norms))
	for j, n := range norms {
		if n == 0 {
			return nil, layerErr(f.l, "use_dora: output feature %d of W + s·A·B is all zeros; its direction is undefined", j)
		}
		c[j] = float64(f.magnitude[j]) / n
	}
	return c, nil
}

// rescaleMatrix rescales V = W + s·A·B, held in vals as [in, out]
// row-major (an int4 layer's dequantized, merged weight), to m·V/‖V‖ per
// column, and returns ‖V‖ per output feature.
func (f fold) rescaleMatrix(vals []float32) ([]float64, error) {
	out := int(f.l.Out)
	norms := make([]float64, out)
	for k, v := range vals {
		norms[k%out] += float64(v) * float64(v)
	}
	for j := range norms {
		norms[j] = math.Sqrt(norms[j])
	}
	c, err := f.columnScales(norms)
	if err != nil {
		return nil, err
	}
	for k, v := range vals {
		vals[k] = float32(float64(v) * c[k%out])
	}
	return norms, nil
}

// scaleColumns multiplies output feature j of l's stored weight by c[j].
func scaleColumns(m *graph.Model, l Linear, c []float64) error {
	in, out := int(l.In), int(l.Out)
	t := m.Initializer(l.Weight)
	vals, err := m.Float32s(t)
	if err != nil {
		return layerErr(l, "%w", err)
	}
	for j := 0; j < out; j++ {
		for i := 0; i < in; i++ {
			k := i*out + j
			if l.WeightTransposed {
				k = j*in + i
			}
			vals[k] = float32(float64(vals[k]) * c[j])
		}
	}
	if err := graph.SetFloat32s(t, vals); err != nil {
		return layerErr(l, "%w", err)
	}
	return nil
}

// doraMagnitude returns a module's magnitude from an adapter's weights,
// checked against the layer: nil for plain LoRA.
func doraMagnitude(cfg *adapter.LoRAConfig, key string, l Linear, w adapter.LoRAWeights) ([]float32, error) {
	if !cfg.UseDoRA {
		return nil, nil
	}
	if w.Magnitude == nil {
		return nil, layerErr(l, "adapter module %q has no lora_magnitude_vector, which use_dora needs", key)
	}
	if len(w.Magnitude.Data) != int(l.Out) {
		return nil, layerErr(l, "adapter module %q has lora_magnitude_vector %v; the layer has %d output features", key, w.Magnitude.Shape, l.Out)
	}
	return w.Magnitude.Data, nil
}

// magnitudeTensor returns a site's magnitude as an adapter tensor.
func magnitudeTensor(s Site, vals []float32) *adapter.Tensor {
	return &adapter.Tensor{DType: adapterType(s.DType), Shape: []int64{s.Out}, Data: vals}
}

// siteReaders returns the nodes of site s that read value: DoRA's
// rescaling reads the base output, which the layer's other readers stop
// reading.
func siteReaders(m *graph.Model, s *Site, value string) []*onnxpb.NodeProto {
	var out []*onnxpb.NodeProto
	for _, c := range m.Consumers(value) {
		if slices.Contains(s.Nodes, c.Name) {
			out = append(out, c)
		}
	}
	return out
}

// sharedBeyondBranches reports whether l's weight, or a node of its
// chain, is read by something other than l and the branches of rec: DoRA's
// norm reads the weight too, which does not keep it from merging.
func sharedBeyondBranches(m *graph.Model, l Linear, rec record) bool {
	own := map[*onnxpb.NodeProto]bool{l.Node: true}
	for _, n := range l.WeightChain {
		own[n] = true
	}
	branch := map[string]bool{}
	for _, s := range rec.Sites {
		for _, n := range s.Nodes {
			branch[n] = true
		}
	}
	values := []string{l.Weight}
	for _, n := range l.WeightChain {
		values = append(values, n.Output...)
	}
	for _, v := range values {
		for _, c := range m.Consumers(v) {
			if !own[c] && !branch[c.Name] {
				return true
			}
		}
	}
	return m.IsGraphOutput(values[len(values)-1])
}
