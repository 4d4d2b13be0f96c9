package runtime

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/feed"
	"github.com/peftonnx/peftonnx/internal/pkgerr"
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
	// KVNamed is any other naming that package feed recognises: Whisper's
	// past_key_self_{i}, one past for every layer, …; each cache grows
	// along the axis that its dimensions name.
	KVNamed
)

// String names the layout as its input names read: "past_key_values.{i}.key/value"
// or "past_{i}".
func (l KVLayout) String() string { return enumName(l, "KVLayout", kvLayoutNames) }

var kvLayoutNames = map[KVLayout]string{
	KVPerLayer: "past_key_values.{i}.key/value",
	KVStacked:  "past_{i}",
	KVNamed:    "named caches",
}

// ErrNoKVCache is wrapped by the error that NewGenerator returns for a model
// without past_key_values inputs.
var ErrNoKVCache = errors.New("no past_key_values inputs")

// DecoderInfo describes how a decoder takes its tokens and its KV cache, as
// NewGenerator reads them from the model's inputs and outputs.
type DecoderInfo struct {
	Layout KVLayout
	// Past names the inputs that a step carries to the next, in the
	// model's order: for KVPerLayer layer 0's key, layer 0's value, layer
	// 1's key, …; for KVStacked past_0, past_1, …; and a hybrid decoder's
	// states (past_conv.{i}) among them. Present names the outputs that
	// return them, in the same order. Layers counts the layers with a KV
	// cache, which need not be 0 to Layers−1.
	Past, Present []string
	Layers        int
	KVHeads       int        // heads of the first cache, fewer than the query heads under grouped-query attention; 0 where its layout does not say
	HeadDim       int        // width of one head of the first cache; 0 likewise
	CacheDType    dtype.Type // element type of the first cache: Float32, Float16, …

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

	// States names the entries of Past that are recurrent or convolution
	// states (no past-length axis: the same shape every step), nil where
	// there are none.
	States []string
	// Defaults says, one line per input, what generation feeds the
	// inputs that the caller does not give and that are not LLaMA's usual
	// int64 ones: token types of zeros, zero states, int32 ids; nil where
	// there are none. A command prints them once.
	Defaults []string
}

// Generator generates tokens with a decoder's KV cache: it feeds the prompt
// once, then one token per step, each time with the cache that the step
// before returned. It is safe for concurrent use: every Generate call and
// every Sequence has its own cache. The Generator does not own the
// session; close the session after the last use of the Generator.
type Generator struct {
	s    *Session
	info DecoderInfo

	ids, mask, pos, types string // input names; all but ids "" when absent
	idsType, maskType     dtype.Type
	posType, typesType    dtype.Type
	carried               []carried // Past and Present, with their layouts
	others                []string  // required inputs that the caller feeds (see Sequence.SetFeeds)

	mu    sync.Mutex
	vocab int // Output's last axis, once known
}

// carried is an input that each step feeds with the output of the step
// before: a KV cache or a state.
type carried struct {
	slot    feed.Slot
	present string
	state   bool // no past-length axis
}

var (
	perLayerPast = regexp.MustCompile(`^past_key_values\.(\d+)\.(key|value)$`)
	stackedPast  = regexp.MustCompile(`^past_(\d+)$`)
)

// NewGenerator reads the decoder's inputs and outputs (package feed): its
// token ids, attention mask, positions and token types, in whatever
// integer type it declares, and the inputs that each step carries to the
// next, each matched by a present output: KV caches under any of the
// namings feed knows (KVLayout), on every layer or some, and recurrent or
// convolution states. Each cache's and state's sizes come from its
// declared shape, or where that is dynamic from its present output's. A
// model without cache inputs gets an error that wraps ErrNoKVCache.
// Other inputs, such as LoRA factors that the model takes as inputs or a
// cross-attention cache, are the caller's to feed (GenerateOptions.Feeds,
// Sequence.SetFeeds); those with defaults may be left out.
func NewGenerator(s *Session) (*Generator, error) {
	g := &Generator{s: s}
	info, err := g.readDecoderInfo()
	if err != nil {
		return nil, err
	}
	g.info, g.vocab = *info, info.Vocab
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
		name == g.types && g.types != "" || slices.Contains(g.info.Past, name)
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

// readDecoderInfo finds the token, mask, position and token-type inputs
// of a decoder and the inputs that its steps carry, and fills in g's
// names and layouts.
func (g *Generator) readDecoderInfo() (*DecoderInfo, error) {
	s := g.s
	fail := func(format string, args ...any) error {
		return errorf("%s: %w", s.name, pkgerr.Format("runtime", format, args...))
	}
	info := &DecoderInfo{}
	outs := map[string]ValueInfo{}
	for _, v := range s.outputs {
		outs[v.Name] = v
	}
	plan := FeedPlan(s.inputs, s.outputs)

	perLayer, stacked, named := 0, 0, 0
	layers := map[int]bool{}
	keys, values := map[int]string{}, map[int]string{}
	for _, slot := range plan.Carried() {
		if slot.Optional {
			continue
		}
		c := carried{slot: slot, present: slot.Present, state: slot.Role == feed.State}
		if c.present == "" {
			want := feed.PresentNames(slot.Name)
			return nil, fail("cache input %q has no matching output %q (outputs: %s)", slot.Name, first(want), joinNames(s.outputNames()))
		}
		out := outs[c.present]
		if slot.DType != out.DType {
			return nil, fail("cache input %s and output %s differ in element type", slot.Input, feed.Input(out))
		}
		switch slot.DType {
		case dtype.Float32, dtype.Float16, dtype.BFloat16, dtype.Float64:
		default:
			return nil, fail("cache input %s: element type %s is not a float type", slot.Input, slot.DType)
		}
		if out.Shape != nil && slot.Shape != nil && len(out.Shape) != len(slot.Shape) {
			return nil, fail("cache input %s and output %s differ in rank", slot.Input, feed.Input(out))
		}
		if _, err := slot.FeedShape(1, 1, 0); err != nil {
			return nil, fail("%w", err)
		}
		if c.state {
			info.States = append(info.States, slot.Name)
		} else {
			switch {
			case perLayerPast.MatchString(slot.Name):
				perLayer++
				sub := perLayerPast.FindStringSubmatch(slot.Name)
				if sub[2] == "key" {
					keys[slot.Layer] = slot.Name
				} else {
					values[slot.Layer] = slot.Name
				}
			case stackedPast.MatchString(slot.Name):
				stacked++
				if slot.Shape != nil && (len(slot.Shape) != 5 || slot.Shape[0] >= 0 && slot.Shape[0] != 2) {
					return nil, fail("cache %s stacks %v on axis 0, want [2, batch, heads, past, head_dim] (key and value)", slot.Input, slot.Shape)
				}
			default:
				named++
			}
			layers[slot.Layer] = true
			if info.CacheDType == dtype.Undefined {
				info.CacheDType = slot.DType
				info.KVHeads, info.HeadDim = headsOf(slot)
			}
		}
		g.carried = append(g.carried, c)
		info.Past = append(info.Past, slot.Name)
		info.Present = append(info.Present, c.present)
	}
	for layer, k := range keys {
		if values[layer] == "" {
			return nil, fail("KV cache input %s has no past_key_values.%d.value: layer %d is incomplete", k, layer, layer)
		}
	}
	for layer, v := range values {
		if keys[layer] == "" {
			return nil, fail("KV cache input %s has no past_key_values.%d.key: layer %d is incomplete", v, layer, layer)
		}
	}
	switch {
	case len(g.carried) == 0:
		return nil, errorf("%s: %w (%s)", s.name, ErrNoKVCache, s.describeInputs())
	case perLayer > 0 && stacked > 0:
		return nil, fail("has both past_key_values.{i}.key/value and past_{i} inputs; cannot tell which is the KV cache")
	case perLayer > 0 && named == 0:
		info.Layout = KVPerLayer
	case stacked > 0 && named == 0:
		info.Layout = KVStacked
	case perLayer+stacked+named > 0:
		info.Layout = KVNamed
	}
	info.Layers = len(layers)
	if info.CacheDType == dtype.Undefined {
		info.CacheDType = g.carried[0].slot.DType
	}

	ids, ok := plan.First(feed.TokenIDs)
	if !ok {
		return nil, fail("has no input_ids input (%s)", s.describeInputs())
	}
	if !isInteger(ids.DType) {
		return nil, fail("%s is %s, want an integer type", ids.Input, ids.DType)
	}
	if ids.Shape != nil {
		if len(ids.Shape) != 2 {
			return nil, fail("%s has rank %d, want rank 2 [batch, sequence]", ids.Input, len(ids.Shape))
		}
		if ids.Shape[1] > 0 {
			info.StepTokens = int(ids.Shape[1])
		}
	}
	g.ids, g.idsType = ids.Name, ids.DType
	if ids.Name != "input_ids" || ids.DType != dtype.Int64 {
		info.Defaults = append(info.Defaults, fmt.Sprintf("%s: the prompt's and the generated token ids", ids.Input))
	}
	for _, r := range []feed.Role{feed.AttentionMask, feed.Positions, feed.TokenTypes} {
		slot, ok := plan.First(r)
		if !ok || slot.Optional && r == feed.TokenTypes {
			continue
		}
		if slot.Shape != nil && len(slot.Shape) != 2 {
			return nil, fail("%s has rank %d, want rank 2 [batch, length]", slot.Input, len(slot.Shape))
		}
		if !isInteger(slot.DType) && !slot.DType.IsFloat() {
			return nil, fail("%s is %s, want an integer or float type", slot.Input, slot.DType)
		}
		usual := slot.Name == r.CanonicalName() && slot.DType == dtype.Int64
		switch r {
		case feed.AttentionMask:
			g.mask, g.maskType, info.AttentionMask = slot.Name, slot.DType, true
		case feed.Positions:
			g.pos, g.posType, info.PositionIDs = slot.Name, slot.DType, true
		case feed.TokenTypes:
			g.types, g.typesType, usual = slot.Name, slot.DType, false
		}
		if !usual {
			info.Defaults = append(info.Defaults, fmt.Sprintf("%s: %s", slot.Input, slot.Default()))
		}
	}
	for _, c := range g.carried {
		if c.state {
			info.Defaults = append(info.Defaults, fmt.Sprintf("%s: %s, then %s of the step before", c.slot.Input, c.slot.Default(), c.present))
		}
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

// headsOf returns the KV heads and head width of a cache in one of the
// usual layouts ([batch, heads, past, dim], stacked with 2 or 2·layers in
// front), 0 and 0 where its layout is another.
func headsOf(s feed.Slot) (heads, dim int) {
	shape, err := s.FeedShape(1, 1, 0)
	if err != nil || s.LengthAxis < 1 || s.LengthAxis != len(shape)-2 {
		return 0, 0
	}
	return int(shape[s.LengthAxis-1]), int(shape[s.LengthAxis+1])
}

// isInteger reports whether t is an integer element type.
func isInteger(t dtype.Type) bool {
	switch t {
	case dtype.Int64, dtype.Int32, dtype.Int16, dtype.Int8, dtype.Uint8, dtype.Uint16, dtype.Uint32, dtype.Uint64:
		return true
	}
	return false
}

// first returns the first of names, "" for none.
func first(names []string) string {
	if len(names) == 0 {
		return ""
	}
	return names[0]
}
