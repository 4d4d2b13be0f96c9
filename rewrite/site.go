package rewrite

import (
	"slices"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
)

// Site records one linear layer that carries a LoRA branch:
//
//	Output = base(x) + dropout(x)·A·B·Scale
//
// with A [In, R·k] and B [R, Out/n·k] for a fused projection of n parts, k of
// them enabled (Enable), and A [In, R], B [R, Out] otherwise.
type Site struct {
	// Module is the layer's module name; A and B are named after it.
	Module string `json:"module"`
	// Node is the name of the base MatMul or Gemm node, and Op its type.
	Node string `json:"node"`
	Op   string `json:"op"`
	// Weight is the base weight's initializer and Bias the bias, if any.
	Weight string `json:"weight"`
	Bias   string `json:"bias,omitempty"`
	// In and Out are the layer's features.
	In  int64 `json:"in"`
	Out int64 `json:"out"`
	// R is the rank (per enabled part), Alpha lora_alpha.
	R     int     `json:"r"`
	Alpha float64 `json:"alpha"`
	// Scale is s, alpha/r or alpha/√r. With AsInputs the graph does not
	// multiply by it: it is folded into B when the adapter is fed.
	Scale float64 `json:"scale"`
	// A and B name the factors: initializers, or graph inputs with AsInputs.
	A string `json:"a"`
	B string `json:"b"`
	// Enable and HeadDim describe a fused projection (PaddleNLP's
	// enable_lora_list); Enable is nil for plain LoRA.
	Enable  []bool `json:"enable,omitempty"`
	HeadDim int    `json:"head_dim,omitempty"`
	// Widths are the widths of the contiguous parts of a packed q, k, v
	// projection inside fused attention (fused_attention.go); with them,
	// HeadDim plays no part and B is [R, Σ enabled widths].
	Widths []int64 `json:"widths,omitempty"`
	// DType is the element type the branch computes in and A and B are
	// stored in; BaseDType is the layer's own.
	DType     dtype.Type `json:"dtype"`
	BaseDType dtype.Type `json:"base_dtype"`
	// Output is what the base node wrote before injection. BaseOutput is
	// what it writes now: the same name, unless Output is a graph output,
	// in which case the base node was given a fresh one. Sum is the value
	// that the layer's readers see, base plus branch: Output itself when it
	// is a graph output.
	Output     string `json:"output"`
	BaseOutput string `json:"base_output"`
	Sum        string `json:"sum"`
	// Input is what the base node read before injection and BaseInput
	// what it reads now, where the branch changed that: an int4 DoRA
	// site feeds its base node the activation's rows with Aᵀ's appended
	// (dora_nbits.go), and its BaseOutput is the node's [rows + rk, out]
	// product. Both are "" elsewhere.
	Input     string `json:"input,omitempty"`
	BaseInput string `json:"base_input,omitempty"`
	// Nodes and Initializers are what the branch added: nodes by name, and
	// the helper initializers it alone reads (not A and B).
	Nodes        []string `json:"nodes"`
	Initializers []string `json:"initializers,omitempty"`
	// AsInputs reports that A and B are graph inputs with rank-0 defaults.
	AsInputs bool `json:"as_inputs,omitempty"`
	// Dropout is the dropout rate of the branch (0: no dropout node).
	Dropout float64 `json:"dropout,omitempty"`
	// Kind is the layer's kind (KindLinear, KindEmbedding, KindConv) and
	// Kernel a convolution's kernel shape.
	Kind   string  `json:"kind,omitempty"`
	Kernel []int64 `json:"kernel,omitempty"`
	// Magnitude names DoRA's magnitude initializer (use_dora; shaped as
	// MagnitudeShape says), and DoRANorm the value that holds ‖W + s·A·B‖
	// per output feature, which training detaches (see dora.go and
	// dora_layers.go); both "" for plain LoRA.
	Magnitude string `json:"magnitude,omitempty"`
	DoRANorm  string `json:"dora_norm,omitempty"`
	// InitialA and InitialB name the factors a PiSSA or OLoRA site started
	// from, whose s·A₀·B₀ was taken off the weight (init_pissa.go); "" for
	// other inits.
	InitialA string `json:"initial_a,omitempty"`
	InitialB string `json:"initial_b,omitempty"`
}

// Parts returns the number of enabled parts k of a fused projection, or 1.
func (s Site) Parts() int { return adapter.EnabledParts(s.Enable) }

// AShape and BShape return the shapes of A and B in graph layout for rank
// r; a convolution's are [r, in, k…] and [out, r, 1…] (see conv.go).
func (s Site) AShape(r int64) []int64 {
	if s.Kind == KindConv {
		return append([]int64{r, s.In}, s.Kernel...)
	}
	return []int64{s.In, r * int64(s.Parts())}
}

// BShape returns B's shape for rank r; see AShape.
func (s Site) BShape(r int64) []int64 {
	if s.Kind == KindConv {
		return append([]int64{s.Out, r}, slices.Repeat([]int64{1}, len(s.Kernel))...) // a 1×1 kernel
	}
	if s.Enable == nil {
		return []int64{r, s.Out}
	}
	if s.Widths != nil {
		var cols int64
		for _, g := range enabledParts(s.Enable) {
			cols += s.Widths[g]
		}
		return []int64{r, cols}
	}
	return []int64{r, s.Out / int64(len(s.Enable)) * int64(s.Parts())}
}

// inputShapes returns, for factors that are graph inputs (AsInputs), the
// shapes of A's and B's default initializers and the shapes the inputs
// declare, -1 at the rank. The defaults have rank 0, [in, 0] and [0, out],
// except a convolution's: a Conv cannot have zero channels, so they are
// rank-1 zeros, which add zero as well.
func (s Site) inputShapes() (aDefault, bDefault, aDecl, bDecl []int64) {
	if s.Kind == KindConv {
		aDecl, bDecl = s.AShape(1), s.BShape(1)
		aDecl[0], bDecl[1] = -1, -1
		return s.AShape(1), s.BShape(1), aDecl, bDecl
	}
	aDefault, bDefault = s.AShape(0), s.BShape(0)
	return aDefault, bDefault, []int64{s.In, -1}, []int64{-1, bDefault[1]}
}

// MetadataKey is the model metadata_props key under which an adapted model
// records its LoRA sites, so that Merge, ExtractAdapter and Summarize work
// on a model loaded from a file. ONNX Runtime ignores it.
const MetadataKey = "peftonnx.lora"

// record is what MetadataKey holds.
type record struct {
	Version int                `json:"version"`
	Config  adapter.LoRAConfig `json:"config"`
	Sites   []Site             `json:"sites"`
	// Shared lists graph inputs and initializers that every site uses
	// (the training-mode switch, dropout constants).
	Shared []string `json:"shared,omitempty"`
	// SharedNodes lists nodes that every site reads (composite dropout).
	SharedNodes []string `json:"shared_nodes,omitempty"`
	// Trainable lists base initializers that train along (biases,
	// trainable_modules).
	Trainable []extraParam `json:"trainable,omitempty"`
}

// extraParam is a base initializer that trains along with LoRA. Key is
// its name in an adapter's Extra map: "<module>.weight" or "<module>.bias"
// for a linear layer's tensors, else the initializer's name.
type extraParam struct {
	Name string `json:"name"`
	Key  string `json:"key"`
}

// readRecord returns the LoRA record of m, or ok false when m has none.
func readRecord(m *graph.Model) (rec record, ok bool, err error) {
	if ok, err = readMetadataJSON(m, MetadataKey, &rec); err != nil {
		return record{}, false, err
	}
	return rec, ok, nil
}

// mustRecord is readRecord that fails when m carries no LoRA branch.
func mustRecord(m *graph.Model) (record, error) {
	rec, ok, err := readRecord(m)
	if err != nil {
		return record{}, err
	}
	if !ok || len(rec.Sites) == 0 {
		return record{}, errorf("%s carries no LoRA branch (no %q metadata)", modelLabel(m), MetadataKey)
	}
	return rec, nil
}

// writeRecord stores rec in m's metadata, or removes it when rec has no
// sites.
func writeRecord(m *graph.Model, rec *record) error {
	if rec == nil || len(rec.Sites) == 0 {
		m.DeleteMetadata(MetadataKey)
		return nil
	}
	rec.Version = 1
	return writeMetadataJSON(m, MetadataKey, rec)
}

// Sites returns the LoRA sites that m records, or an error when it carries
// none.
func Sites(m *graph.Model) ([]Site, error) {
	rec, err := mustRecord(m)
	if err != nil {
		return nil, err
	}
	return rec.Sites, nil
}

// modelLabel names a model in messages: its file, or "model".
func modelLabel(m *graph.Model) string {
	if m.Path != "" {
		return m.Path
	}
	return "model"
}
