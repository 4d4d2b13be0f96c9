package rewrite

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
	"github.com/peftonnx/peftonnx/internal/half"
	rt "github.com/peftonnx/peftonnx/runtime"
)

// layerCase is a one-layer model and what its LoRA layer must compute.
type layerCase struct {
	name string
	// in and out are the layer's features; rows is how many rows of x
	// the layer sees, with x shaped xShape.
	in, out int
	xShape  []int64
	elem    dtype.Type // the activations' type
	// gemm: transA, transB, alpha, beta and a bias C.
	gemm           bool
	transA, transB bool
	alpha, beta    float32
	// wTransposed stores W as [out, in] behind a Transpose; wCast stores it
	// in float16 behind a Cast to float32.
	wTransposed, wCast bool
	// relu reads the layer's output, so that y is not a graph output.
	relu bool
	// LoRA: rank, alpha, rsLoRA, fused parts, adapter dtype.
	r       int
	loraA   float64
	rslora  bool
	enable  []bool
	headDim int
	adt     dtype.Type
	tol     float64
}

var layerCases = []layerCase{
	{name: "matmul", in: 6, out: 5, xShape: []int64{2, 3, 6}, elem: dtype.Float32, r: 3, loraA: 6, tol: 1e-5},
	{name: "matmul-relu", in: 6, out: 5, xShape: []int64{4, 6}, elem: dtype.Float32, relu: true, r: 2, loraA: 2, tol: 1e-5},
	{name: "matmul-cast-transpose", in: 6, out: 4, xShape: []int64{2, 2, 6}, elem: dtype.Float32, wTransposed: true, wCast: true, r: 4, loraA: 8, rslora: true, tol: 1e-5},
	{name: "gemm-transB-alpha-beta", in: 5, out: 7, xShape: []int64{3, 5}, elem: dtype.Float32, gemm: true, transB: true, alpha: 0.5, beta: 2, r: 2, loraA: 4, tol: 1e-5},
	{name: "gemm-transA", in: 5, out: 3, xShape: []int64{5, 4}, elem: dtype.Float32, gemm: true, transA: true, alpha: 1, beta: 1, relu: true, r: 2, loraA: 2, tol: 1e-5},
	{name: "fp16-base-fp32-adapter", in: 8, out: 6, xShape: []int64{1, 3, 8}, elem: dtype.Float16, r: 2, loraA: 4, tol: 2e-2},
	{name: "fp16-adapter", in: 8, out: 6, xShape: []int64{3, 8}, elem: dtype.Float16, r: 2, loraA: 4, adt: dtype.Float16, tol: 2e-2},
	{name: "fused-qkv", in: 6, out: 12, xShape: []int64{2, 3, 6}, elem: dtype.Float32, r: 2, loraA: 4, enable: []bool{true, false, true}, headDim: 2, tol: 1e-5},
	{name: "fused-contiguous", in: 4, out: 12, xShape: []int64{5, 4}, elem: dtype.Float32, gemm: true, transB: true, alpha: 1, beta: 1, r: 3, loraA: 3, enable: []bool{false, true, true}, headDim: 4, tol: 1e-5},
}

// newRand returns a seeded generator.
func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 11)) }

// layerModel builds tc's base model and returns it with W as [in, out]
// (as float32, after any float16 rounding), and the bias C.
func layerModel(t *testing.T, tc layerCase, rng *rand.Rand) (*graph.Model, []float64, []float64) {
	t.Helper()
	w := make([]float32, tc.in*tc.out)
	for i := range w {
		w[i] = float32(rng.NormFloat64() / math.Sqrt(float64(tc.in)))
	}
	if tc.wCast || tc.elem == dtype.Float16 {
		for i, v := range w {
			w[i] = half.Float16ToFloat32(half.Float32ToFloat16(v))
		}
	}
	weff := make([]float64, len(w))
	for i, v := range w {
		weff[i] = float64(v)
	}
	stored, dims := w, []int64{int64(tc.in), int64(tc.out)}
	if tc.wTransposed != tc.transB { // stored [out, in]
		stored = transpose(w, tc.in, tc.out)
		dims = []int64{int64(tc.out), int64(tc.in)}
	}
	wType := tc.elem
	if tc.wCast {
		wType = dtype.Float16
	}
	g := &onnxpb.GraphProto{Name: tc.name}
	g.Initializer = append(g.Initializer, graph.NewFloat32Tensor("layer.proj.weight", wType, dims, stored))
	wv := "layer.proj.weight"
	if tc.wCast {
		g.Node = append(g.Node, &onnxpb.NodeProto{OpType: "Cast", Name: "/layer/proj/Cast", Input: []string{wv}, Output: []string{"w_cast"}, Attribute: []*onnxpb.AttributeProto{graph.AttrInt("to", int64(tc.elem))}})
		wv = "w_cast"
	}
	if tc.wTransposed {
		g.Node = append(g.Node, &onnxpb.NodeProto{OpType: "Transpose", Name: "/layer/proj/Transpose", Input: []string{wv}, Output: []string{"w_t"}})
		wv = "w_t"
	}
	var bias []float64
	y := "y"
	if tc.relu {
		y = "pre"
	}
	if tc.gemm {
		c := make([]float32, tc.out)
		bias = make([]float64, tc.out)
		for i := range c {
			c[i] = float32(rng.NormFloat64())
			bias[i] = float64(c[i])
		}
		g.Initializer = append(g.Initializer, graph.NewFloat32Tensor("layer.proj.bias", tc.elem, []int64{int64(tc.out)}, c))
		attrs := []*onnxpb.AttributeProto{graph.AttrFloat("alpha", tc.alpha), graph.AttrFloat("beta", tc.beta)}
		if tc.transA {
			attrs = append(attrs, graph.AttrInt("transA", 1))
		}
		if tc.transB {
			attrs = append(attrs, graph.AttrInt("transB", 1))
		}
		g.Node = append(g.Node, &onnxpb.NodeProto{OpType: "Gemm", Name: "/layer/proj/Gemm", Input: []string{"x", wv, "layer.proj.bias"}, Output: []string{y}, Attribute: attrs})
	} else {
		g.Node = append(g.Node, &onnxpb.NodeProto{OpType: "MatMul", Name: "/layer/proj/MatMul", Input: []string{"x", wv}, Output: []string{y}})
	}
	outShape := slices.Clone(tc.xShape)
	if tc.transA {
		outShape = []int64{tc.xShape[1], int64(tc.out)}
	} else {
		outShape[len(outShape)-1] = int64(tc.out)
	}
	if tc.relu {
		g.Node = append(g.Node, &onnxpb.NodeProto{OpType: "Relu", Name: "/relu/Relu", Input: []string{"pre"}, Output: []string{"y"}})
	}
	g.Input = []*onnxpb.ValueInfoProto{graph.TensorInfo("x", tc.elem, tc.xShape)}
	g.Output = []*onnxpb.ValueInfoProto{graph.TensorInfo("y", tc.elem, outShape)}
	p := &onnxpb.ModelProto{IrVersion: 8, OpsetImport: []*onnxpb.OperatorSetIdProto{{Version: 17}}, Graph: g}
	return graph.New(p, ""), weff, bias
}

// layerAdapter makes a random adapter for module "layer.proj" of tc.
func layerAdapter(tc layerCase, rng *rand.Rand) *adapter.Adapter {
	cfg := config(tc.r, tc.loraA, "layer.proj")
	cfg.UseRSLoRA = tc.rslora
	cfg.DType = tc.adt
	if tc.enable != nil {
		cfg.EnableLoRAList = adapter.EnableLoRAList{PerTarget: [][]bool{tc.enable}}
		cfg.HeadDim = tc.headDim
	}
	k, w := 1, tc.out
	if tc.enable != nil {
		k = len(enabledParts(tc.enable))
		w = tc.out / len(tc.enable) * k
	}
	a := make([]float32, tc.in*tc.r*k)
	b := make([]float32, tc.r*w)
	for i := range a {
		a[i] = float32(rng.NormFloat64() / math.Sqrt(float64(tc.in)))
	}
	for i := range b {
		b[i] = float32(rng.NormFloat64() * 0.3)
	}
	if tc.adt == dtype.Float16 {
		for i, v := range a {
			a[i] = half.Float16ToFloat32(half.Float32ToFloat16(v))
		}
		for i, v := range b {
			b[i] = half.Float16ToFloat32(half.Float32ToFloat16(v))
		}
	}
	ad := adapter.NewLoRA(cfg)
	ad.Weights["layer.proj"] = adapter.LoRAWeights{
		A: adapter.NewTensor([]int64{int64(tc.in), int64(tc.r * k)}, a),
		B: adapter.NewTensor([]int64{int64(tc.r), int64(w)}, b),
	}
	return ad
}

// expectLayer computes tc's output in float64, independently of the graph:
// the base layer plus s·x·A·Bfull, where Bfull places each enabled part's
// block of B (its columns laid out [heads, parts, head_dim]) into the
// columns of its projection, head by head.
func expectLayer(tc layerCase, x, weff, bias []float64, ad *adapter.Adapter) []float64 {
	rows := len(x) / tc.in
	xr := x // x as [rows, in]
	if tc.transA {
		xr = make([]float64, len(x))
		for i := 0; i < tc.in; i++ {
			for j := 0; j < rows; j++ {
				xr[j*tc.in+i] = x[i*rows+j]
			}
		}
	}
	s := tc.loraA / float64(tc.r)
	if tc.rslora {
		s = tc.loraA / math.Sqrt(float64(tc.r))
	}
	w := ad.Weights["layer.proj"]
	rk := int(w.A.Shape[1])
	// Bfull [rk, out], built element by element from the definition.
	bfull := make([]float64, rk*tc.out)
	if tc.enable == nil {
		for i, v := range w.B.Data {
			bfull[i] = float64(v)
		}
	} else {
		n, parts := len(tc.enable), enabledParts(tc.enable)
		k, d := len(parts), tc.headDim
		width := tc.out / n
		for e, part := range parts {
			for i := 0; i < tc.r; i++ {
				for c := 0; c < width; c++ {
					h, j := c/d, c%d
					bfull[(e*tc.r+i)*tc.out+h*n*d+part*d+j] = float64(w.B.Data[i*width*k+h*k*d+e*d+j])
				}
			}
		}
	}
	alpha, beta := 1.0, 1.0
	if tc.gemm {
		alpha, beta = float64(tc.alpha), float64(tc.beta)
	}
	y := make([]float64, rows*tc.out)
	for r := 0; r < rows; r++ {
		xa := make([]float64, rk)
		for k := 0; k < rk; k++ {
			for i := 0; i < tc.in; i++ {
				xa[k] += xr[r*tc.in+i] * float64(w.A.Data[i*rk+k])
			}
		}
		for o := 0; o < tc.out; o++ {
			var base, lora float64
			for i := 0; i < tc.in; i++ {
				base += xr[r*tc.in+i] * weff[i*tc.out+o]
			}
			for k := 0; k < rk; k++ {
				lora += xa[k] * bfull[k*tc.out+o]
			}
			v := alpha*base + s*lora
			if bias != nil {
				v += beta * bias[o]
			}
			if tc.relu {
				v = math.Max(v, 0)
			}
			y[r*tc.out+o] = v
		}
	}
	return y
}

// layerInput draws tc's input x, rounded to its type, and returns it as
// the model's feeds and in float64.
func layerInput(t *testing.T, tc layerCase, rng *rand.Rand) (map[string]*rt.Tensor, []float64) {
	t.Helper()
	x := make([]float32, graph.NumElements(tc.xShape))
	x64 := make([]float64, len(x))
	for i := range x {
		x[i] = float32(rng.NormFloat64())
		if tc.elem == dtype.Float16 {
			x[i] = half.Float16ToFloat32(half.Float32ToFloat16(x[i]))
		}
		x64[i] = float64(x[i])
	}
	var xt *rt.Tensor
	var err error
	if tc.elem == dtype.Float16 {
		xt, err = rt.NewFloat16FromFloat32(tc.xShape, x)
	} else {
		xt, err = rt.NewFloat32(tc.xShape, x)
	}
	if err != nil {
		t.Fatal(err)
	}
	return map[string]*rt.Tensor{"x": xt}, x64
}

// TestLayerMath checks one adapted layer against an independent
// computation of x·W + x·A·B·s, then the merged layer against the same,
// across MatMul and Gemm forms, weights behind Cast and Transpose, float16,
// rsLoRA and fused projections.
func TestLayerMath(t *testing.T) {
	for i, tc := range layerCases {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(i), 11))
			base, weff, bias := layerModel(t, tc, rng)
			feeds, x64 := layerInput(t, tc, rng)
			ad := layerAdapter(tc, rng)
			want := expectLayer(tc, x64, weff, bias, ad)

			adapted := base.Clone()
			sites, _, err := ApplyLoRA(adapted, ad)
			if err != nil {
				t.Fatal(err)
			}
			if len(sites) != 1 || sites[0].Module != "layer.proj" {
				t.Fatalf("sites: got %+v want one for layer.proj", sites)
			}
			check := func(what string, m *graph.Model) {
				t.Helper()
				tol := tc.tol
				if what != "adapted" && tc.wCast {
					tol = 2e-2 // the merged weight is stored in float16
				}
				got := run(t, session(t, m), feeds)["y"].ToFloat64()
				for j := range want {
					if d := math.Abs(got[j]-want[j]) / math.Max(1, math.Abs(want[j])); d > tol || math.IsNaN(got[j]) {
						t.Fatalf("%s: y[%d]: got %v want %v", what, j, got[j], want[j])
					}
				}
			}
			check("adapted", adapted)
			merged := adapted.Clone()
			if err := Merge(merged); err != nil {
				t.Fatal(err)
			}
			check("merged", merged)
			baseNodes, baseInits := names(base)
			gotNodes, gotInits := names(merged)
			if !slices.Equal(gotNodes, baseNodes) || !slices.Equal(gotInits, baseInits) {
				t.Errorf("merged names: got nodes %v inits %v want %v %v", gotNodes, gotInits, baseNodes, baseInits)
			}
			// What stays is the record of the merge (its fingerprint, for
			// unmerge), nothing of the adapter.
			if md := merged.Proto.MetadataProps; len(md) != 1 || md[0].Key != MergeMetadataKey || len(merged.Graph().Input) != 1 {
				t.Errorf("merged model keeps metadata %v or inputs %d, want only %s", md, len(merged.Graph().Input), MergeMetadataKey)
			}
			direct := base.Clone()
			if err := MergeAdapter(direct, ad); err != nil {
				t.Fatal(err)
			}
			check("MergeAdapter", direct)
		})
	}
}
