package adapter

import (
	"fmt"
	"os"
	"regexp"
	"strings"

	"github.com/peftonnx/peftonnx/dtype"
)

// ONNXAdapterLayout says which file identifier and root table an
// .onnx_adapter flatbuffer uses. The Parameter table is the same in all of
// them: name:string, dims:[int64], data_type:int32 (ONNX
// TensorProto.DataType), raw_data:[uint8].
type ONNXAdapterLayout int

const (
	// LayoutORT is what ONNX Runtime 1.20 and later read and write
	// (onnxruntime/lora/adapter_format/adapter_schema.fbs): file identifier
	// "TORT" and root table Adapter { format_version:int;
	// adapter_version:int; model_version:int; parameters:[Parameter] }.
	// ONNX Runtime accepts format_version 1 only.
	LayoutORT ONNXAdapterLayout = iota
	// LayoutGenAILegacy is the first onnxruntime-genai LoRA format
	// (mid-2024, schema genai_lora.fbs): file identifier "GAIL" and root
	// table Parameters { version:int; parameters:[Param] }. Its version is
	// kept in FormatVersion. The shared test file two_lora_params uses it;
	// current ONNX Runtime does not read it.
	LayoutGenAILegacy
	// LayoutORTPreview is ONNX Runtime's interim lora_format: file
	// identifier "GAIL" with the Adapter root table of LayoutORT.
	LayoutORTPreview
)

// String returns the layout's name.
func (l ONNXAdapterLayout) String() string {
	switch l {
	case LayoutORT:
		return "ort"
	case LayoutGenAILegacy:
		return "genai-legacy"
	case LayoutORTPreview:
		return "ort-preview"
	}
	return fmt.Sprintf("ONNXAdapterLayout(%d)", int(l))
}

func (l ONNXAdapterLayout) identifier() string {
	if l == LayoutORT {
		return "TORT"
	}
	return "GAIL"
}

// ONNXAdapterFile is the content of an ONNX Runtime .onnx_adapter file,
// kept as stored so that it can be written back unchanged.
type ONNXAdapterFile struct {
	Layout         ONNXAdapterLayout
	FormatVersion  int32 // 1 for files ONNX Runtime reads
	AdapterVersion int32 // not stored by LayoutGenAILegacy
	ModelVersion   int32 // not stored by LayoutGenAILegacy
	Params         []ONNXParam

	// UnalignedRawData writes raw_data aligned to 4 bytes only, as ONNX
	// Runtime's own writer does (it ignores the schema's force_align: 8).
	// DecodeONNXAdapter sets it when some raw_data in the file does not
	// start on 8 bytes, so that a file read and written again keeps its
	// bytes. The zero value aligns raw_data to 8, as the schema asks.
	UnalignedRawData bool
}

// ONNXParam is one parameter of an .onnx_adapter file. In the "adapters as
// inputs" layout that ONNX Runtime's LoRA API feeds, Name is the graph input
// it feeds: "<module>.lora_A.weight" [in, r] and "<module>.lora_B.weight"
// [r, out].
type ONNXParam struct {
	Name     string
	Dims     []int64
	DataType dtype.Type // stored as ONNX numbers it: 1 float, 10 float16, 16 bfloat16, …
	RawData  []byte     // little-endian, row-major
}

// check reports a parameter whose dims, type and data disagree.
func (p *ONNXParam) check() error {
	size := p.DataType.Size()
	if size == 0 {
		return fmt.Errorf("unsupported data_type %d", p.DataType)
	}
	n, err := numElements(p.Dims)
	if err != nil {
		return err
	}
	if want := uint64(n) * uint64(size); uint64(len(p.RawData)) != want {
		return fmt.Errorf("dims %v of data_type %d need %d bytes, raw_data has %d", p.Dims, p.DataType, want, len(p.RawData))
	}
	return nil
}

// Tensor converts the parameter to a Tensor.
func (p *ONNXParam) Tensor() (*Tensor, error) {
	if err := p.check(); err != nil {
		return nil, formatErrorf("", p.Name, "%w", err)
	}
	dt := p.DataType
	if !storable(dt) {
		return nil, formatErrorf("", p.Name, "data_type %d has no float32 form", p.DataType)
	}
	data, err := decodeData(dt, p.RawData)
	if err != nil {
		return nil, formatErrorf("", p.Name, "%w", err)
	}
	return &Tensor{DType: dt, Shape: append([]int64{}, p.Dims...), Data: data}, nil
}

// NewONNXParam returns the parameter that stores t under name, as t.DType.
func NewONNXParam(name string, t *Tensor) (ONNXParam, error) {
	if err := t.check(); err != nil {
		return ONNXParam{}, formatErrorf("", name, "%w", err)
	}
	raw, err := encodeData(t.DType, t.Data)
	if err != nil {
		return ONNXParam{}, formatErrorf("", name, "%w", err)
	}
	return ONNXParam{Name: name, Dims: append([]int64{}, t.Shape...), DataType: storedAs(t.DType), RawData: raw}, nil
}

// ReadONNXAdapter reads an .onnx_adapter file in any of the layouts.
func ReadONNXAdapter(path string) (*ONNXAdapterFile, error) {
	return readDecoded(path, os.ReadFile, DecodeONNXAdapter)
}

// DecodeONNXAdapter parses an .onnx_adapter flatbuffer. It tells the
// layouts apart by file identifier and, for "GAIL", by the root table's
// vtable: the legacy Parameters table has two fields, Adapter has four. It
// checks every offset against the buffer and refuses, with a *FormatError,
// parameters without a name or dims, duplicate names, unsupported data
// types and raw_data whose size disagrees with dims.
func DecodeONNXAdapter(data []byte) (*ONNXAdapterFile, error) {
	bad := func(key, format string, args ...any) error {
		return formatErrorf("", key, ".onnx_adapter: "+format, args...)
	}
	if len(data) <= 8 {
		return nil, bad("", "%d bytes is too short for a flatbuffer", len(data))
	}
	f := &ONNXAdapterFile{}
	switch ident := string(data[4:8]); ident {
	case "TORT":
		f.Layout = LayoutORT
	case "GAIL":
		f.Layout = LayoutGenAILegacy
	default:
		return nil, bad("", "file identifier is %q, want \"TORT\" or \"GAIL\"", ident)
	}
	r := &fbReader{buf: data}
	rootPos, err := r.deref(0)
	if err != nil {
		return nil, bad("", "root: %w", err)
	}
	root, err := r.table(rootPos)
	if err != nil {
		return nil, bad("", "root: %w", err)
	}
	if f.Layout == LayoutGenAILegacy && root.numFields() > 2 {
		f.Layout = LayoutORTPreview
	}
	paramsSlot := 3
	if f.Layout == LayoutGenAILegacy {
		paramsSlot = 1
		if f.FormatVersion, err = r.int32Field(root, 0, 0); err != nil {
			return nil, bad("", "version: %w", err)
		}
	} else {
		for slot, p := range []*int32{&f.FormatVersion, &f.AdapterVersion, &f.ModelVersion} {
			if *p, err = r.int32Field(root, slot, 0); err != nil {
				return nil, bad("", "root: %w", err)
			}
		}
	}
	start, count, _, err := r.vector(root, paramsSlot, 4)
	if err != nil {
		return nil, bad("", "parameters: %w", err)
	}
	seen := make(map[string]bool, count)
	var total int64 // bytes of raw_data so far
	f.Params = make([]ONNXParam, 0, count)
	for i := 0; i < count; i++ {
		pos, err := r.deref(start + 4*i)
		if err != nil {
			return nil, bad("", "parameter %d: %w", i, err)
		}
		t, err := r.table(pos)
		if err != nil {
			return nil, bad("", "parameter %d: %w", i, err)
		}
		name, err := r.stringField(t, 0)
		if err != nil {
			return nil, bad("", "parameter %d: name: %w", i, err)
		}
		if name == "" {
			return nil, bad("", "parameter %d has no name", i)
		}
		if seen[name] {
			return nil, bad(name, "duplicate parameter name")
		}
		seen[name] = true
		p := ONNXParam{Name: name}
		ds, dn, ok, err := r.vector(t, 1, 8)
		if err != nil {
			return nil, bad(name, "dims: %w", err)
		}
		if !ok {
			return nil, bad(name, "no dims")
		}
		p.Dims = make([]int64, dn)
		for j := range p.Dims {
			lo, _ := r.u32(ds + 8*j)
			hi, _ := r.u32(ds + 8*j + 4)
			p.Dims[j] = int64(uint64(hi)<<32 | uint64(lo))
		}
		dt, err := r.int32Field(t, 2, 0)
		if err != nil {
			return nil, bad(name, "data_type: %w", err)
		}
		p.DataType = dtype.Type(dt)
		rs, rn, _, err := r.vector(t, 3, 1)
		if err != nil {
			return nil, bad(name, "raw_data: %w", err)
		}
		if rn > 0 && rs%8 != 0 {
			f.UnalignedRawData = true
		}
		// Each parameter's raw_data is a vector of its own in a file that
		// a builder wrote, so together they fit in the file. Parameters
		// pointing at one shared vector (a hostile file: 2,000 of them at
		// one 8 MB vector asked 16 GB of copies) are refused before any
		// copy is made.
		if total += int64(rn); total > int64(len(data)) {
			return nil, bad(name, "raw_data: the parameters' data add up to more than the file's %d bytes: their vectors overlap", len(data))
		}
		p.RawData = append([]byte{}, data[rs:rs+rn]...)
		if err := p.check(); err != nil {
			return nil, bad(name, "%w", err)
		}
		f.Params = append(f.Params, p)
	}
	return f, nil
}

// Encode returns the flatbuffer bytes of f, laid out as ONNX Runtime's C++
// builder lays them out: each parameter's name, dims and raw_data, then its
// table, in order; then the parameter vector, the root table and the file
// identifier of f.Layout.
func (f *ONNXAdapterFile) Encode() ([]byte, error) {
	switch f.Layout {
	case LayoutORT, LayoutORTPreview:
	case LayoutGenAILegacy:
		if f.AdapterVersion != 0 || f.ModelVersion != 0 {
			return nil, errorf(".onnx_adapter: layout %s cannot store adapter_version %d and model_version %d", f.Layout, f.AdapterVersion, f.ModelVersion)
		}
	default:
		return nil, errorf(".onnx_adapter: unknown layout %d", int(f.Layout))
	}
	total := 64
	seen := make(map[string]bool, len(f.Params))
	for i := range f.Params {
		p := &f.Params[i]
		if p.Name == "" {
			return nil, errorf(".onnx_adapter: parameter %d has no name", i)
		}
		if seen[p.Name] {
			return nil, formatErrorf("", p.Name, ".onnx_adapter: duplicate parameter name")
		}
		seen[p.Name] = true
		if err := p.check(); err != nil {
			return nil, formatErrorf("", p.Name, ".onnx_adapter: %w", err)
		}
		total += len(p.Name) + 8*len(p.Dims) + len(p.RawData) + 64
	}
	b := newFBBuilder(total)
	offs := make([]int, len(f.Params))
	for i := range f.Params {
		p := &f.Params[i]
		name := b.createString(p.Name)
		dims := b.createInt64Vector(p.Dims)
		if !f.UnalignedRawData {
			b.preAlign(len(p.RawData), 8)
		}
		raw := b.createVector(p.RawData, len(p.RawData), 1, 1)
		b.startTable()
		b.addOffset(3, raw)
		b.addInt32(2, int32(p.DataType), 0)
		b.addOffset(1, dims)
		b.addOffset(0, name)
		offs[i] = b.endTable()
	}
	params := b.createOffsetVector(offs)
	b.startTable()
	if f.Layout == LayoutGenAILegacy {
		b.addOffset(1, params)
		b.addInt32(0, f.FormatVersion, 0)
	} else {
		b.addOffset(3, params)
		b.addInt32(2, f.ModelVersion, 0)
		b.addInt32(1, f.AdapterVersion, 0)
		b.addInt32(0, f.FormatVersion, 0)
	}
	root := b.endTable()
	return b.finish(root, f.Layout.identifier()), nil
}

// WriteONNXAdapter writes f to path atomically.
func WriteONNXAdapter(path string, f *ONNXAdapterFile) error {
	data, err := f.Encode()
	if err != nil {
		return inFile(err, path)
	}
	return writeFileAtomic(path, data)
}

// Param returns the parameter called name, or nil.
func (f *ONNXAdapterFile) Param(name string) *ONNXParam {
	for i := range f.Params {
		if f.Params[i].Name == name {
			return &f.Params[i]
		}
	}
	return nil
}

// The suffixes that name LoRA factors in the "adapters as inputs" layout.
const (
	onnxSuffixA = ".lora_A.weight"
	onnxSuffixB = ".lora_B.weight"
)

// ToAdapter maps the file's parameters to a LoRA adapter:
// "<module>.lora_A.weight" [in, r] and "<module>.lora_B.weight" [r, out]
// (a convolution's [r, in, k…] and [out, r, 1…]) become Weights[module],
// already in graph layout; any other parameter
// goes to Extra under its own name. The file carries no LoRA config: with
// cfg nil, ToAdapter makes one with R from the shapes, Alpha equal to R
// (scaling 1: the graph carries any scaling), and one target per module
// (its quoted name); ranks that differ from R go to RankPattern and
// AlphaPattern. The result is validated.
func (f *ONNXAdapterFile) ToAdapter(cfg *LoRAConfig) (*Adapter, error) {
	weights := map[string]LoRAWeights{}
	extra := map[string]*Tensor{}
	for i := range f.Params {
		p := &f.Params[i]
		t, err := p.Tensor()
		if err != nil {
			return nil, err
		}
		switch {
		case strings.HasSuffix(p.Name, onnxSuffixA) && len(p.Name) > len(onnxSuffixA):
			m := strings.TrimSuffix(p.Name, onnxSuffixA)
			w := weights[m]
			w.A = t
			weights[m] = w
		case strings.HasSuffix(p.Name, onnxSuffixB) && len(p.Name) > len(onnxSuffixB):
			m := strings.TrimSuffix(p.Name, onnxSuffixB)
			w := weights[m]
			w.B = t
			weights[m] = w
		default:
			extra[p.Name] = t
		}
	}
	modules := sortedKeys(weights)
	for _, m := range modules {
		w := weights[m]
		switch {
		case w.A == nil:
			return nil, formatErrorf("", m+onnxSuffixB, "lora_B without %s", m+onnxSuffixA)
		case w.B == nil:
			return nil, formatErrorf("", m+onnxSuffixA, "lora_A without %s", m+onnxSuffixB)
		case (len(w.A.Shape) != 2 || len(w.B.Shape) != 2) && !(w.Conv() && len(w.B.Shape) == len(w.A.Shape)):
			return nil, formatErrorf("", m+onnxSuffixA, "lora_A %v and lora_B %v must both be 2-D, or a convolution's [r, in, k…] and [out, r, 1…]", w.A.Shape, w.B.Shape)
		}
	}
	if len(modules) == 0 {
		return nil, errorf(".onnx_adapter holds no LoRA parameters (no \"<module>%s\")", onnxSuffixA)
	}
	if cfg == nil {
		cfg = deriveLoRAConfig(weights, modules)
	}
	c := *cfg
	a := &Adapter{LoRA: &c, Weights: weights, Extra: extra}
	if err := a.Validate(); err != nil {
		return nil, err
	}
	return a, nil
}

// deriveLoRAConfig makes a config that fits weights: R from the first
// module, every module a target, scaling 1.
func deriveLoRAConfig(weights map[string]LoRAWeights, modules []string) *LoRAConfig {
	cfg := DefaultLoRAConfig()
	first := weights[modules[0]].A
	cfg.R = int(weights[modules[0]].Rank())
	cfg.Alpha = float64(cfg.R)
	if dt := storedAs(first.DType); checkTrainingDType(dt) == nil {
		cfg.DType = dt
	}
	for _, m := range modules {
		key := regexp.QuoteMeta(m)
		cfg.TargetModules = append(cfg.TargetModules, key)
		if r := int(weights[m].Rank()); r != cfg.R && r > 0 {
			if cfg.RankPattern == nil {
				cfg.RankPattern, cfg.AlphaPattern = map[string]int{}, map[string]float64{}
			}
			cfg.RankPattern[key] = r
			cfg.AlphaPattern[key] = float64(r)
		}
	}
	return &cfg
}

// NewONNXAdapterFile returns the .onnx_adapter content of a LoRA adapter in
// LayoutORT with format version 1: for each module in sorted order
// "<module>.lora_A.weight" [in, r] and "<module>.lora_B.weight" [r, out],
// then the Extra tensors by name, each stored as its DType. Scaling is not
// folded into the weights.
func NewONNXAdapterFile(a *Adapter) (*ONNXAdapterFile, error) {
	if a.LoRA == nil {
		return nil, errorf(".onnx_adapter holds LoRA adapters only")
	}
	if a.LoRA.UseDoRA {
		return nil, errorf(".onnx_adapter cannot hold a DoRA adapter (use_dora): it stores named tensors without a config, and the magnitude rescales by the norm of W + s·A·B, which needs the scaling s; save it as an HF PEFT directory")
	}
	if err := a.Validate(); err != nil {
		return nil, err
	}
	f := &ONNXAdapterFile{Layout: LayoutORT, FormatVersion: 1}
	add := func(name string, t *Tensor) error {
		p, err := NewONNXParam(name, t)
		if err != nil {
			return err
		}
		f.Params = append(f.Params, p)
		return nil
	}
	for _, m := range a.Modules() {
		if err := add(m+onnxSuffixA, a.Weights[m].A); err != nil {
			return nil, err
		}
		if err := add(m+onnxSuffixB, a.Weights[m].B); err != nil {
			return nil, err
		}
	}
	for _, name := range sortedKeys(a.Extra) {
		if _, clash := a.Weights[strings.TrimSuffix(strings.TrimSuffix(name, onnxSuffixA), onnxSuffixB)]; clash {
			return nil, formatErrorf("", name, "extra tensor name clashes with a LoRA parameter")
		}
		if err := add(name, a.Extra[name]); err != nil {
			return nil, err
		}
	}
	return f, nil
}
