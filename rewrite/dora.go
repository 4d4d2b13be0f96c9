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
// DoRA takes linear layers (MatMul, Gemm, fused projections), embeddings
// and convolutions (dora_layers.go) with float weights, QDQ weights (the
// DequantizeLinear's output is the float W the norm reads) and int4
// MatMulNBits layers (dora_nbits.go: the norm without a float W); AsInputs
// is refused. Stacked factors (StackDoRA, stacked_dora.go) serve DoRA
// adapters beside plain ones: the gain m/‖V‖ of each, computed on the
// host from the base weight when the adapter is read, is fed per slot.
// Merge into a float weight is exact: W' above, stored where W is (a QDQ
// or int4 weight becomes float with Dequantize; Requantize rounds W' back
// into int4). A merged DoRA weight does not determine ‖V‖ (any positive
// rescaling of V gives the same W'), so Merge keeps ‖V‖ of each layer in
// the model's metadata, as HF PEFT keeps the weight norm at merge time,
// and Unmerge undoes the rescaling with it (dora_unmerge.go).
//
// A com.microsoft Attention node computes its q, k and v inside, so its
// DoRA goes on the weight side, as its LoRA does (fused_attention.go):
// the node reads W' = V·diag(m/‖V‖), V = W + s·A·Bfull, computed in the
// graph from the packed weight [hidden, q+k+v] (small: no activation
// passes it), the norm taken and detached as above (doraWeight). The
// magnitude has one entry per column of the packed weight, as HF PEFT's
// lora_magnitude_vector has one per output feature of the module it
// adapts (GPT-2's c_attn: q, k and v alike), and all of it trains: HF
// PEFT has no partial magnitude. With enable_lora_list, the columns of a
// disabled part have V = W, so their magnitude starts at ‖W[:, j]‖ (a
// fresh model computes the base) and trains a magnitude-only update of
// that part, which Merge writes into its columns too. The packed qkv_proj
// MatMul before GroupQueryAttention is a linear layer with the same
// parts (Site.Widths), and takes DoRA the same way, through doraDelta.

// doraSuffix names a module's magnitude initializer, as HF PEFT 0.12 and
// later name its tensor.
const doraSuffix = ".lora_magnitude_vector.weight"

// checkDoRA refuses the layers and options that DoRA does not take.
func checkDoRA(l Linear, asInputs bool) error {
	switch {
	case asInputs:
		return layerErr(l, "use_dora: DoRA's magnitude rescales by the norm of W + s·A·B, which needs the scaling in the graph; AsInputs folds it into the fed B")
	}
	return nil
}

// planDoRA completes the DoRA part of plan p for layer l: a fresh site's
// magnitude, the norms of W per output feature as the layer computes with
// it (Gemm's alpha included), and the norms of an embedding's table or an
// int4 layer's weight, which its ‖V‖ reads as constants (dora_layers.go,
// dora_nbits.go).
func planDoRA(m *graph.Model, l Linear, p *modulePlan) error {
	constant := l.Kind == KindEmbedding || l.Quantized()
	if p.mag != nil && !constant {
		return nil
	}
	norms, err := weightNorms(m, l.asMatrix())
	if err != nil {
		return err
	}
	if p.mag == nil {
		p.mag = make([]float32, len(norms))
		for j, n := range norms {
			p.mag[j] = float32(n)
		}
	}
	if constant {
		dt := p.site.DType
		for j, n := range norms {
			if n*n >= largestFinite(dt) {
				return layerErr(l, "use_dora: ‖W‖² of %s %d of weight %q is %.6g, past the largest %s, the branch's type, in which the graph holds it; give the branch dtype float32", featureWord(l), j, l.Weight, n*n, dt)
			}
		}
		p.constNorms = norms
	}
	return nil
}

// featureWord names an output feature of l in messages.
func featureWord(l Linear) string {
	if l.Kind == KindEmbedding {
		return "embedding dimension"
	}
	return "output feature"
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
	return scaledWeight(l, vals), nil
}

// scaledWeight returns α·W of layer l in graph layout [in, out], in
// float64, from vals, its weight initializer's values as stored.
func scaledWeight(l Linear, vals []float32) []float64 {
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
	return w
}

// weightNorms returns the Euclidean norm of each output feature (column)
// of α·W, layer l's weight as the layer computes with it, in float64; an
// int4 layer's from its blocks, without the whole float W.
func weightNorms(m *graph.Model, l Linear) ([]float64, error) {
	if l.Quantized() {
		return nbitsWeightNorms(m, l)
	}
	w, err := effectiveWeight(m, l)
	if err != nil {
		return nil, err
	}
	return columnNorms(w, int(l.In), int(l.Out)), nil
}

// columnNorms returns the Euclidean norm of each column of w [in, out].
func columnNorms(w []float64, in, out int) []float64 {
	n := make([]float64, out)
	for i := 0; i < in; i++ {
		for j, v := range w[i*out : (i+1)*out] {
			n[j] += v * v
		}
	}
	for j := range n {
		n[j] = math.Sqrt(n[j])
	}
	return n
}

// doraDelta returns what DoRA adds to the base output base of l, given
// d = s·x·A·B in the layer's type: (m/‖V‖ − 1)·(base − bias) + (m/‖V‖)·d.
// It adds the magnitude initializer and the norm's nodes (doraNorm), and
// records the norm in the site.
func (b *loraGraph) doraDelta(l Linear, pre *graph.Builder, bFull, base, d string, p *modulePlan) string {
	s := b.site
	sd := pre.In("lora_magnitude")
	b.g.Model().AddInitializer(graph.NewFloat32Tensor(s.Magnitude, s.DType, s.MagnitudeShape(), p.mag))
	norm := b.doraNorm(l, sd, bFull, p.constNorms)
	s.DoRANorm = norm
	scale := sd.Op("Div", []string{s.Magnitude, norm})
	if s.DType != l.DType {
		scale = sd.Op("Cast", []string{scale}, graph.AttrInt("to", int64(l.DType)))
	}
	one := b.scalar(s.Module+".lora_magnitude.one", l.DType, 1)
	rescaled := sd.Op("Mul", []string{sd.Op("Sub", []string{scale, one}), b.withoutBias(l, sd, base)})
	return sd.Op("Add", []string{rescaled, sd.Op("Mul", []string{scale, d})})
}

// doraNorm adds the nodes of ‖V‖ per output feature, V = α·W + s·A·B, in
// the branch's type, shaped to broadcast against the layer's output:
// [1, out] for a linear layer, [dim] for an embedding, [1, out, 1…] for a
// convolution (dora_layers.go). constNorms are the ‖W_j‖ that an
// embedding's or an int4 layer's norm takes as constants.
func (b *loraGraph) doraNorm(l Linear, sd *graph.Builder, bFull string, constNorms []float64) string {
	switch {
	case l.Kind == KindEmbedding:
		return b.embeddingNorm(l, sd, constNorms)
	case l.Kind == KindConv:
		return b.convNorm(l, sd, bFull)
	case l.Quantized():
		return b.nbitsNorm(l, sd, bFull, constNorms)
	}
	s := b.site
	// V = α·W + s·A·B in the branch's type, [in, out].
	w := l.Node.Input[1]
	if l.Op == "Gemm" && graph.IntAttr(l.Node, "transB", 0) != 0 {
		w = sd.Op("Transpose", []string{w}, graph.AttrInts("perm", 1, 0))
	}
	w = b.branchTyped(l, sd, w)
	if l.Alpha != 1 {
		w = sd.Op("Mul", []string{w, b.scalar(s.Module+".lora_magnitude.alpha", s.DType, l.Alpha)})
	}
	return b.columnNorms(sd, sd.Op("Add", []string{w, b.scaled(sd, sd.Op("MatMul", []string{s.A, bFull}))}))
}

// columnNorms adds the nodes of ‖V[:, j]‖, [1, out], of V [in, out] in
// the branch's type: √(1ᵀ·(V⊙V)), a MatMul with ones, which every opset
// has (ReduceSumSquare moved its axes to an input in opset 18).
func (b *loraGraph) columnNorms(sd *graph.Builder, v string) string {
	sq := sd.Op("MatMul", []string{b.ones(1, b.site.In), sd.Op("Mul", []string{v, v})})
	return sd.Op("Sqrt", []string{sq})
}

// withoutBias returns the base output of l less its bias, which DoRA's
// rescaling leaves out: β·C of a Gemm, a convolution's bias, the bias
// input of a MatMulNBits; base itself where there is none.
func (b *loraGraph) withoutBias(l Linear, sd *graph.Builder, base string) string {
	s := b.site
	if l.Kind == KindConv && len(l.Node.Input) > 2 && l.Node.Input[2] != "" {
		// The bias [out] as [out, 1…], against the output [N, out, …].
		shape := append([]int64{s.Out}, slices.Repeat([]int64{1}, len(s.Kernel))...)
		c := sd.Op("Reshape", []string{l.Node.Input[2], b.int64s(s.Module+".lora_magnitude.bias_shape", shape...)})
		return sd.Op("Sub", []string{base, c})
	}
	if l.Quantized() && len(l.Node.Input) > quant.InputBias && l.Node.Input[quant.InputBias] != "" {
		return sd.Op("Sub", []string{base, l.Node.Input[quant.InputBias]})
	}
	return unbiased(sd, l, base, func(beta float32) string {
		return b.scalar(s.Module+".lora_magnitude.beta", l.DType, beta)
	})
}

// branchTyped casts value v of l's type to the branch's, where they differ.
func (b *loraGraph) branchTyped(l Linear, sd *graph.Builder, v string) string {
	if b.site.DType == l.DType {
		return v
	}
	return sd.Op("Cast", []string{v}, graph.AttrInt("to", int64(b.site.DType)))
}

// scaled returns v times the site's scaling s, in the branch's type.
func (b *loraGraph) scaled(sd *graph.Builder, v string) string {
	s := b.site
	if s.Scale == 1 {
		return v
	}
	return sd.Op("Mul", []string{v, b.scalar(s.Module+".lora_magnitude.scaling", s.DType, float32(s.Scale))})
}

// ones adds an initializer of ones of the branch's type and shape dims.
func (b *loraGraph) ones(dims ...int64) string {
	s := b.site
	v := make([]float32, graph.NumElements(dims))
	for i := range v {
		v[i] = 1
	}
	return b.g.Initializer(s.Module+".lora_magnitude.ones", graph.NewFloat32Tensor("", s.DType, dims, v))
}

// doraWeight returns the weight an Attention layer of site b.site reads
// under DoRA, W' = V·diag(m/‖V‖) with V = w + d, in the layer's type: d
// is s·A·Bfull in the branch's type. As doraDelta does, it takes the norm
// of V formed in the branch's type, and forms W' as w·c + d·c with
// c = m/‖V‖, so that w itself is never rounded to a narrower branch type.
func (b *loraGraph) doraWeight(l Linear, pre *graph.Builder, w, d string, mag []float32) string {
	s := b.site
	sd := pre.In("lora_magnitude")
	b.g.Model().AddInitializer(graph.NewFloat32Tensor(s.Magnitude, s.DType, s.MagnitudeShape(), mag))
	norm := b.columnNorms(sd, sd.Op("Add", []string{b.branchTyped(l, sd, w), d}))
	s.DoRANorm = norm
	c := sd.Op("Div", []string{s.Magnitude, norm})
	dc, wc := sd.Op("Mul", []string{d, c}), c
	if s.DType != l.DType {
		dc = sd.Op("Cast", []string{dc}, graph.AttrInt("to", int64(l.DType)))
		wc = sd.Op("Cast", []string{c}, graph.AttrInt("to", int64(l.DType)))
	}
	return sd.Op("Add", []string{sd.Op("Mul", []string{w, wc}), dc})
}

// unbiased returns base, layer l's output, less the bias β·C that a Gemm
// adds in the node (the part of the output that DoRA rescales), or base
// itself where the node adds none; beta(β) gives the constant β.
func unbiased(b *graph.Builder, l Linear, base string, beta func(float32) string) string {
	if l.Op != "Gemm" || len(l.Node.Input) < 3 || l.Node.Input[2] == "" || l.Beta == 0 {
		return base
	}
	c := l.Node.Input[2]
	if l.Beta != 1 {
		c = b.Op("Mul", []string{c, beta(l.Beta)})
	}
	return b.Op("Sub", []string{base, c})
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
	l := f.l
	norms, err := weightNorms(m, l)
	if err != nil {
		return nil, err
	}
	c, err := doraGains(l, f.magnitude, norms)
	if err != nil {
		return nil, err
	}
	return norms, scaleColumns(m, l, c)
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
	c, err := doraGains(f.l, f.magnitude, norms)
	if err != nil {
		return nil, err
	}
	for k, v := range vals {
		vals[k] = float32(float64(v) * c[k%out])
	}
	return norms, nil
}

// doraGains returns m[j]/‖V[:, j]‖ per output feature of layer l, given
// the norms of V = α·W + s·A·B: what DoRA multiplies feature j by. A zero
// column of V is an error.
func doraGains(l Linear, magnitude []float32, norms []float64) ([]float64, error) {
	g := make([]float64, len(norms))
	for j, n := range norms {
		if n == 0 {
			return nil, layerErr(l, "use_dora: output feature %d of W + s·A·B is all zeros; its direction is undefined", j)
		}
		g[j] = float64(magnitude[j]) / n
	}
	return g, nil
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
	return &adapter.Tensor{DType: adapterType(s.DType), Shape: s.MagnitudeShape(), Data: vals}
}

// MagnitudeShape returns the shape of the site's DoRA magnitude, in the
// graph as in HF PEFT's file: [out], or [1, out, 1…] for a convolution,
// whose magnitude PEFT keeps shaped to broadcast against its output.
func (s Site) MagnitudeShape() []int64 {
	if s.Kind == KindConv {
		return append([]int64{1, s.Out}, slices.Repeat([]int64{1}, len(s.Kernel))...)
	}
	return []int64{s.Out}
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
