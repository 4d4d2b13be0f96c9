package runtime

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/peftonnx/peftonnx/dtype"
)

// KVLayout is how a decoder takes its key/value cache.
type KVLayout int

const (
	// KVPerLayer is the layout of Optimum and onnxruntime-genai exports:
	// inputs past_key_values.{i}.key and past_key_values.{i}.value, each
	// [batch, kv_heads, past, head_dim], and outputs present.{i}.key and
	// present.{i}.value with the run's tokens appended on axis 2.
	KVPerLayer KVLayout = iota + 1
	// KVStacked is the layout of older PyTorch GPT-2 exports: one input
	// past_{i} per layer, [2, batch, heads, past, head_dim] with the key at
	// index 0 and the value at 1, and the output present_{i}, appended on
	// axis 3.
	KVStacked
)

// String names the layout as its input names read: "past_key_values.{i}.key/value"
// or "past_{i}".
func (l KVLayout) String() string {
	switch l {
	case KVPerLayer:
		return "past_key_values.{i}.key/value"
	case KVStacked:
		return "past_{i}"
	}
	return fmt.Sprintf("KVLayout(%d)", int(l))
}

// ErrNoKVCache is wrapped by the error that NewGenerator returns for a model
// without past_key_values inputs.
var ErrNoKVCache = errors.New("no past_key_values inputs")

// DecoderInfo describes how a decoder takes its tokens and its KV cache, as
// NewGenerator reads them from the model's inputs and outputs.
type DecoderInfo struct {
	Layout KVLayout
	// Past names the cache inputs in order: for KVPerLayer layer 0's key,
	// layer 0's value, layer 1's key, …; for KVStacked past_0, past_1, ….
	// Present names the outputs that return them, in the same order.
	Past, Present []string
	Layers        int
	KVHeads       int        // heads of the cache, fewer than the query heads under grouped-query attention
	HeadDim       int        // width of one head
	CacheDType    dtype.Type // element type of the cache: Float32, Float16, …

	// AttentionMask reports an attention_mask input [batch, past+seq];
	// PositionIDs a position_ids input [batch, seq].
	AttentionMask, PositionIDs bool
	// StepTokens is the number of tokens that input_ids takes per run where
	// the model fixes it (1 for exports that decode one token at a time),
	// and 0 where any number goes.
	StepTokens int

	// Output is the output that a step returns, [batch, seq, Vocab]: the
	// logits, or for a model without logits (a bare transformer) its first
	// output that is not part of the cache. Logits reports which.
	Output string
	Logits bool
	// Vocab is the size of Output's last axis, or 0 where the model leaves
	// it dynamic and no step has run yet.
	Vocab int
}

// Generator generates tokens with a decoder's KV cache: it feeds the prompt
// once, then one token per step, each time with the cache that the step
// before returned. It is safe for concurrent use: every Generate call and
// every Sequence has its own cache. The Generator does not own the
// session; close the session after the last use of the Generator.
type Generator struct {
	s    *Session
	info DecoderInfo

	ids, mask, pos string   // input names; mask and pos "" when absent
	others         []string // required inputs that the caller feeds (see Sequence.SetFeeds)

	mu    sync.Mutex
	vocab int // Output's last axis, once known
}

var (
	perLayerPast = regexp.MustCompile(`^past_key_values\.(\d+)\.(key|value)$`)
	stackedPast  = regexp.MustCompile(`^past_(\d+)$`)
)

// NewGenerator reads the decoder's cache layout from the session's inputs
// and outputs. The model must take input_ids and a KV cache in one of the
// KVLayout layouts, each past input matched by a present output; the cache's
// heads and head width come from the past inputs' declared shapes, or where
// those are dynamic from the present outputs'. A model without cache inputs
// gets an error that wraps ErrNoKVCache. Inputs besides input_ids,
// attention_mask, position_ids and the cache, such as LoRA factors that the
// model takes as inputs, are the caller's to feed (GenerateOptions.Feeds,
// Sequence.SetFeeds); those with defaults may be left out.
func NewGenerator(s *Session) (*Generator, error) {
	info, err := readDecoderInfo(s)
	if err != nil {
		return nil, err
	}
	g := &Generator{s: s, info: *info, ids: "input_ids",
		mask:  ifElse(info.AttentionMask, "attention_mask", ""),
		pos:   ifElse(info.PositionIDs, "position_ids", ""),
		vocab: info.Vocab}
	for _, v := range s.inputs {
		if !v.Optional && !g.ownsInput(v.Name) {
			g.others = append(g.others, v.Name)
		}
	}
	return g, nil
}

// ownsInput reports whether a Sequence feeds input name itself.
func (g *Generator) ownsInput(name string) bool {
	return name == g.ids || name == g.mask && g.mask != "" || name == g.pos && g.pos != "" ||
		slices.Contains(g.info.Past, name)
}

func ifElse(c bool, a, b string) string {
	if c {
		return a
	}
	return b
}

// Info describes the decoder. Vocab is filled in once a step has shown it.
func (g *Generator) Info() DecoderInfo {
	info := g.info
	info.Past = append([]string(nil), info.Past...)
	info.Present = append([]string(nil), info.Present...)
	info.Vocab = g.vocabSize()
	return info
}

func (g *Generator) vocabSize() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.vocab
}

func (g *Generator) setVocab(v int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.vocab = v
}

// readDecoderInfo finds the cache inputs and outputs of a decoder.
func readDecoderInfo(s *Session) (*DecoderInfo, error) {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("runtime: %s: %s", s.name, fmt.Sprintf(format, args...))
	}
	info := &DecoderInfo{}
	ins := map[string]ValueInfo{}
	for _, v := range s.inputs {
		ins[v.Name] = v
	}
	outs := map[string]ValueInfo{}
	for _, v := range s.outputs {
		outs[v.Name] = v
	}

	type layerKV struct{ key, value string }
	perLayer := map[int]*layerKV{}
	stacked := map[int]string{}
	for _, v := range s.inputs {
		if m := perLayerPast.FindStringSubmatch(v.Name); m != nil {
			i, _ := strconv.Atoi(m[1])
			if perLayer[i] == nil {
				perLayer[i] = &layerKV{}
			}
			if m[2] == "key" {
				perLayer[i].key = v.Name
			} else {
				perLayer[i].value = v.Name
			}
		} else if m := stackedPast.FindStringSubmatch(v.Name); m != nil {
			i, _ := strconv.Atoi(m[1])
			stacked[i] = v.Name
		}
	}
	var seqAxis int // the axis of the cache that grows
	switch {
	case len(perLayer) > 0 && len(stacked) > 0:
		return nil, fail("has both past_key_values.{i}.key/value and past_{i} inputs; cannot tell which is the KV cache")
	case len(perLayer) > 0:
		info.Layout, info.Layers, seqAxis = KVPerLayer, len(perLayer), 2
		for i := range info.Layers {
			l := perLayer[i]
			if l == nil || l.key == "" || l.value == "" {
				return nil, fail("KV cache inputs are not past_key_values.{i}.key and .value for every layer 0…%d: layer %d is incomplete", info.Layers-1, i)
			}
			info.Past = append(info.Past, l.key, l.value)
			info.Present = append(info.Present, fmt.Sprintf("present.%d.key", i), fmt.Sprintf("present.%d.value", i))
		}
	case len(stacked) > 0:
		info.Layout, info.Layers, seqAxis = KVStacked, len(stacked), 3
		for i := range info.Layers {
			name, ok := stacked[i]
			if !ok {
				return nil, fail("KV cache inputs are not past_0…past_%d: past_%d is missing", info.Layers-1, i)
			}
			info.Past = append(info.Past, name)
			info.Present = append(info.Present, fmt.Sprintf("present_%d", i))
		}
	default:
		return nil, fmt.Errorf("runtime: %s: %w (%s)", s.name, ErrNoKVCache, s.describeInputs())
	}

	// Element type, heads and head width, from every past input and its
	// present output.
	rank := seqAxis + 2
	headAxis, dimAxis := seqAxis-1, seqAxis+1
	for j, name := range info.Past {
		in := ins[name]
		out, ok := outs[info.Present[j]]
		if !ok {
			return nil, fail("cache input %q has no matching output %q (outputs: %s)", name, info.Present[j], joinNames(s.outputNames()))
		}
		for _, v := range []ValueInfo{in, out} {
			if v.Shape != nil && len(v.Shape) != rank {
				return nil, fail("cache %s has rank %d, want %d for the %s layout", v, len(v.Shape), rank, info.Layout)
			}
			if info.Layout == KVStacked && v.Shape != nil && v.Shape[0] >= 0 && v.Shape[0] != 2 {
				return nil, fail("cache %s stacks %d tensors on axis 0, want 2 (key and value)", v, v.Shape[0])
			}
		}
		if in.DType != out.DType {
			return nil, fail("cache input %s and output %s differ in element type", in, out)
		}
		switch in.DType {
		case dtype.Float32, dtype.Float16, dtype.BFloat16, dtype.Float64:
		default:
			return nil, fail("cache input %s: element type %s is not a float type", in, in.DType)
		}
		if j == 0 {
			info.CacheDType = in.DType
		} else if in.DType != info.CacheDType {
			return nil, fail("cache inputs %q and %q differ in element type (%s and %s)", info.Past[0], name, info.CacheDType, in.DType)
		}
		heads, err := cacheDim(in, out, headAxis)
		if err != nil {
			return nil, fail("cannot tell the number of KV heads: %v", err)
		}
		dim, err := cacheDim(in, out, dimAxis)
		if err != nil {
			return nil, fail("cannot tell the head width: %v", err)
		}
		if j == 0 {
			info.KVHeads, info.HeadDim = heads, dim
		} else if heads != info.KVHeads || dim != info.HeadDim {
			return nil, fail("cache %q is %d heads × %d, but %q is %d × %d", name, heads, dim, info.Past[0], info.KVHeads, info.HeadDim)
		}
	}

	ids, ok := ins["input_ids"]
	if !ok {
		return nil, fail("has no input_ids input (%s)", s.describeInputs())
	}
	if ids.DType != dtype.Int64 {
		return nil, fail("input_ids is %s, want int64", ids)
	}
	if ids.Shape != nil {
		if len(ids.Shape) != 2 {
			return nil, fail("input_ids is %s, want rank 2 [batch, sequence]", ids)
		}
		if ids.Shape[1] > 0 {
			info.StepTokens = int(ids.Shape[1])
		}
	}
	if v, ok := ins["attention_mask"]; ok {
		if v.DType != dtype.Int64 {
			return nil, fail("attention_mask is %s, want int64", v)
		}
		info.AttentionMask = true
	}
	if v, ok := ins["position_ids"]; ok {
		if v.DType != dtype.Int64 {
			return nil, fail("position_ids is %s, want int64", v)
		}
		info.PositionIDs = true
	}
	cache := map[string]bool{}
	for _, name := range info.Past {
		cache[name] = true
	}
	for _, name := range info.Present {
		cache[name] = true
	}

	// The output a step returns: "logits", else one whose name says
	// logits, else the first output outside the cache.
	var other []string
	for _, v := range s.outputs {
		if !cache[v.Name] {
			other = append(other, v.Name)
		}
	}
	if len(other) == 0 {
		return nil, fail("has no output besides the KV cache")
	}
	info.Output = other[0]
	if _, ok := outs["logits"]; ok {
		info.Output, info.Logits = "logits", true
	} else {
		for _, name := range other {
			if strings.Contains(strings.ToLower(name), "logits") {
				info.Output, info.Logits = name, true
				break
			}
		}
	}
	out := outs[info.Output]
	if !Supported(out.DType) || out.DType == dtype.Bool {
		return nil, fail("output %s is not a numeric tensor", out)
	}
	if out.Shape != nil {
		if len(out.Shape) != 3 {
			return nil, fail("output %s has rank %d, want 3 [batch, sequence, vocab]", out, len(out.Shape))
		}
		if out.Shape[2] >= 0 {
			info.Vocab = int(out.Shape[2])
		}
	}
	if s.plans[s.outIdx[info.Output]].why != "" {
		return nil, fail("output %q cannot be returned: %s", info.Output, s.plans[s.outIdx[info.Output]].why)
	}
	return info, nil
}

// cacheDim returns the size of axis of a cache tensor, from the input's
// declared shape or else from the output's.
func cacheDim(in, out ValueInfo, axis int) (int, error) {
	for _, v := range []ValueInfo{in, out} {
		if v.Shape != nil && v.Shape[axis] > 0 {
			return int(v.Shape[axis]), nil
		}
	}
	return 0, fmt.Errorf("axis %d is dynamic in both %s and %s", axis, in, out)
}
