package rewrite

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
	"github.com/peftonnx/peftonnx/models"
	rt "github.com/peftonnx/peftonnx/runtime"
)

// prefixCase is a model to prefix and the shapes to run it at.
type prefixCase struct {
	name   string
	load   func(t testing.TB) *graph.Model
	cfg    adapter.PrefixConfig
	opts   []PrefixOption
	batch  int
	seq    int // ignored for models whose input_ids are [batch, 1]
	past   int
	tol    float64
	reason string
}

func tinyLlama() (*graph.Model, error) { return models.Llama(models.LlamaTiny()) }

// gpt2Tiny is the GPT-2 builder's tiny model, which has attention_mask but
// no position_ids: it counts positions from the mask.
func gpt2Tiny() (*graph.Model, error) { return models.GPT2(models.GPT2Tiny()) }

var prefixCases = []prefixCase{
	{name: "llama-gqa", load: builtModel(tinyLlama), cfg: adapter.PrefixConfig{NumPrefixTokens: 3},
		batch: 2, seq: 3, past: 2, tol: 1e-5, reason: "GQA (4 heads over 2 KV heads): table sized by KV heads, concatenated in front of a real past"},
	{name: "llama-fresh", load: builtModel(tinyLlama), cfg: adapter.PrefixConfig{NumPrefixTokens: 3},
		batch: 2, seq: 4, past: 0, tol: 1e-5, reason: "a fresh call passes an empty past"},
	{name: "llama-replace", load: builtModel(tinyLlama), cfg: adapter.PrefixConfig{NumPrefixTokens: 3}, opts: []PrefixOption{PrefixReplacePast()},
		batch: 2, seq: 4, past: 0, tol: 1e-5, reason: "past inputs removed, the prefix alone where they went"},
	{name: "llama-projection", load: builtModel(tinyLlama), cfg: adapter.PrefixConfig{NumPrefixTokens: 2, PrefixProjection: true, PrefixProjectionHiddenSize: 7},
		batch: 2, seq: 3, past: 1, tol: 1e-5, reason: "Embedding → Linear → Tanh → Linear computes the table"},
	{name: "llama-fp16", load: builtModel(llamaFP16), cfg: adapter.PrefixConfig{NumPrefixTokens: 3},
		batch: 2, seq: 3, past: 2, tol: 1e-3, reason: "float32 table cast to a float16 cache"},
	{name: "gpt2-builder", load: builtModel(gpt2Tiny), cfg: adapter.PrefixConfig{NumPrefixTokens: 2},
		batch: 2, seq: 3, past: 1, tol: 1e-5, reason: "positions counted from the padded mask"},
	{name: "tiny-llama-genai-fp16", load: func(t testing.TB) *graph.Model { return realModel(t, "tiny-llama-genai-fp16/model.onnx") },
		cfg: adapter.PrefixConfig{NumPrefixTokens: 3}, batch: 2, seq: 1, past: 2, tol: 1e-3, reason: "real export: MultiHeadAttention, RotaryEmbedding, fp16 cache"},
	// The onnxruntime-genai builder's causal mask is [seq, seq] broadcast to
	// [batch, 1, seq, past+seq], which holds for an empty past or one token
	// only; with a prefix the past is never empty, and injection widens it
	// (TestPrefixPromptInOneRun runs prompts of several tokens). The base
	// model this test compares with takes one token on a past.
	{name: "tiny-llama-genai-fp16-fresh", load: func(t testing.TB) *graph.Model { return realModel(t, "tiny-llama-genai-fp16/model.onnx") },
		cfg: adapter.PrefixConfig{NumPrefixTokens: 2}, batch: 1, seq: 1, past: 0, tol: 1e-3, reason: "real export, empty past"},
	{name: "gpt2-past-torch16", load: func(t testing.TB) *graph.Model { return realModel(t, "gpt2-past-torch16/model.onnx") },
		cfg: adapter.PrefixConfig{NumPrefixTokens: 3}, batch: 2, seq: 1, past: 2, tol: 1e-5, reason: "real export: stacked past_{i}, no attention_mask, opset 11"},
}

// TestPrefixMatchesBaseWithPast checks the contract of InjectPrefix: the
// prefixed model fed (ids, mask, positions, past) computes what the base
// model computes fed (ids, ones(P) ‖ mask, positions + P, prefix ‖ past),
// less the prefix positions of the presents.
func TestPrefixMatchesBaseWithPast(t *testing.T) {
	needORT(t)
	for _, tc := range prefixCases {
		t.Run(tc.name, func(t *testing.T) {
			base := tc.load(t)
			m := base.Clone()
			site, sum, err := InjectPrefix(m, tc.cfg, tc.opts...)
			if err != nil {
				t.Fatalf("%s: %v", tc.reason, err)
			}
			if base.Validate() == nil {
				if err := m.Validate(); err != nil {
					t.Fatalf("invalid prefixed graph: %v", err)
				}
			}
			setPrefixParams(t, m, site, 5)
			if sum.TrainableParams != prefixParamCount(site.Config) {
				t.Errorf("trainable params: got %d want %d", sum.TrainableParams, prefixParamCount(site.Config))
			}
			got, want, feeds := runPrefixPair(t, base, m, site, tc)
			if diff, where := maxRelDiff(t, got, want); diff > tc.tol {
				t.Errorf("%s: prefixed model and base with the prefix as past differ by %g in %s (tolerance %g)", tc.reason, diff, where, tc.tol)
			}
			// Control: another prefix gives other outputs.
			setPrefixParams(t, m, site, 6)
			if diff, _ := maxRelDiff(t, run(t, session(t, m), feeds), want); diff < 1e-3 {
				t.Errorf("control: with another prefix the outputs changed by %g only", diff)
			}
		})
	}
}

// TestPrefixGenerationWithCache runs a prefixed model the way generation
// does, a prompt with an empty past and then one token at a time with the
// presents fed back as the past, and checks that each step's logits equal
// those of one run over the whole sequence.
func TestPrefixGenerationWithCache(t *testing.T) {
	needORT(t)
	for _, tc := range []struct {
		name string
		load func(t testing.TB) *graph.Model
	}{
		{"llama", builtModel(tinyLlama)},
		{"gpt2", builtModel(gpt2Tiny)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := tc.load(t)
			site, _, err := InjectPrefix(m, adapter.PrefixConfig{NumPrefixTokens: 3}, PrefixSeed(2))
			if err != nil {
				t.Fatal(err)
			}
			s := session(t, m)
			const batch, total, prompt = 2, 5, 3
			ids := make([]int64, batch*total)
			for i := range ids {
				ids[i] = int64(i*7%16 + 1)
			}
			step := func(from, to int, past map[string]*rt.Tensor) map[string]*rt.Tensor {
				t.Helper()
				n := to - from
				tokens := make([]int64, 0, batch*n)
				pos := make([]int64, 0, batch*n)
				for b := range batch {
					tokens = append(tokens, ids[b*total+from:b*total+to]...)
					for i := from; i < to; i++ {
						pos = append(pos, int64(i))
					}
				}
				mask := make([]int64, batch*to)
				for i := range mask {
					mask[i] = 1
				}
				feeds := map[string]*rt.Tensor{}
				var err error
				if feeds["input_ids"], err = rt.NewInt64([]int64{batch, int64(n)}, tokens); err != nil {
					t.Fatal(err)
				}
				if feeds["attention_mask"], err = rt.NewInt64([]int64{batch, int64(to)}, mask); err != nil {
					t.Fatal(err)
				}
				if m.Input("position_ids") != nil {
					if feeds["position_ids"], err = rt.NewInt64([]int64{batch, int64(n)}, pos); err != nil {
						t.Fatal(err)
					}
				}
				for i, name := range site.Past {
					if past != nil {
						feeds[name] = past[site.Present[i]]
					} else {
						_, dims, _ := graph.ValueShape(m.Input(name))
						if feeds[name], err = rt.Zeros(dtype.Float32, []int64{batch, dims[1], 0, dims[3]}); err != nil {
							t.Fatal(err)
						}
					}
				}
				return run(t, s, feeds)
			}
			full := step(0, total, nil)["logits"]
			vocab := int(full.Shape()[2])
			out := step(0, prompt, nil)
			for i := prompt; i < total; i++ {
				out = step(i, i+1, out)
				got, want := out["logits"].ToFloat64(), full.ToFloat64()
				for b := range batch {
					for v := range vocab {
						g, w := got[b*vocab+v], want[(b*total+i)*vocab+v]
						if math.Abs(g-w) > 1e-5*math.Max(1, math.Abs(w)) {
							t.Fatalf("token %d, row %d: logit %d with the cache is %g, in one run %g", i, b, v, g, w)
						}
					}
				}
			}
		})
	}
}

// prefixParamCount returns the number of trainable prefix values for c.
func prefixParamCount(c adapter.PrefixConfig) int64 {
	n := int64(c.NumPrefixTokens * c.EmbeddingWidth())
	if c.PrefixProjection {
		h, ph, w := int64(c.HiddenSize), int64(c.PrefixProjectionHiddenSize), int64(c.TableWidth())
		n += h*ph + ph + ph*w + w
	}
	return n
}

// setPrefixParams gives the prefix parameters known random values.
func setPrefixParams(t testing.TB, m *graph.Model, site *PrefixSite, seed uint64) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 17))
	for i, name := range site.Trainable() {
		init := m.Initializer(name)
		v := make([]float32, graph.NumElements(init.Dims))
		std := 1.0
		if i > 0 {
			std = 0.5
		}
		for j := range v {
			v[j] = float32(rng.NormFloat64() * std)
		}
		if err := graph.SetFloat32s(init, v); err != nil {
			t.Fatal(err)
		}
	}
}

// prefixTableOf computes the [P, width] table of a prefixed model in Go,
// from its parameters: the prompt itself, or the projection MLP over it.
func prefixTableOf(t testing.TB, m *graph.Model, site *PrefixSite) []float32 {
	t.Helper()
	vals := func(name string) []float32 {
		v, err := m.Float32s(m.Initializer(name))
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	c := site.Config
	prompt := vals(site.Prompt)
	if !c.PrefixProjection {
		return prompt
	}
	P, h, ph, w := c.NumPrefixTokens, c.HiddenSize, c.PrefixProjectionHiddenSize, c.TableWidth()
	w1, b1, w2, b2 := vals(site.Projection[0]), vals(site.Projection[1]), vals(site.Projection[2]), vals(site.Projection[3])
	out := make([]float32, P*w)
	mid := make([]float64, ph)
	for p := range P {
		for j := range ph {
			s := float64(b1[j])
			for k := range h {
				s += float64(prompt[p*h+k]) * float64(w1[k*ph+j])
			}
			mid[j] = math.Tanh(s)
		}
		for j := range w {
			s := float64(b2[j])
			for k := range ph {
				s += mid[k] * float64(w2[k*w+j])
			}
			out[p*w+j] = float32(s)
		}
	}
	return out
}

// prefixedPast returns the base model's past for one layer's key (kind 0)
// or value (kind 1): the prefix from table, as HF PEFT unpacks it, in
// front of past [batch, kv, pastLen, d], over every batch row.
func prefixedPast(c adapter.PrefixConfig, table []float32, layer, kind int, past []float32, batch, pastLen int) []float32 {
	P, kv, d, w := c.NumPrefixTokens, c.KVHeads(), c.HeadDim(), c.TableWidth()
	total := P + pastLen
	out := make([]float32, batch*kv*total*d)
	for b := range batch {
		for h := range kv {
			for s := range total {
				for e := range d {
					var v float32
					if s < P {
						v = table[s*w+((2*layer+kind)*kv+h)*d+e]
					} else {
						v = past[((b*kv+h)*pastLen+s-P)*d+e]
					}
					out[((b*kv+h)*total+s)*d+e] = v
				}
			}
		}
	}
	return out
}

// runPrefixPair runs the prefixed model m and the base model on
// equivalent inputs and returns their outputs, the base's presents with
// the prefix positions dropped.
func runPrefixPair(t testing.TB, base, m *graph.Model, site *PrefixSite, tc prefixCase) (got, want, feeds map[string]*rt.Tensor) {
	t.Helper()
	c := site.Config
	P := c.NumPrefixTokens
	rng := rand.New(rand.NewPCG(uint64(len(tc.name)), 23))
	batch, seq, pastLen := tc.batch, tc.seq, tc.past
	if _, dims, _ := graph.ValueShape(base.Input("input_ids")); len(dims) == 2 && dims[1] == 1 {
		seq = 1
	}
	ids := make([]int64, batch*seq)
	for i := range ids {
		ids[i] = int64(rng.IntN(16)) // gpt2-past-torch16 has 20 tokens
	}
	mask := make([]int64, batch*(pastLen+seq))
	for i := range mask {
		mask[i] = 1
	}
	if pastLen > 0 {
		mask[pastLen+seq] = 0 // row 1 does not see its first past position
	}
	pos := make([]int64, batch*seq)
	for i := range pos {
		pos[i] = int64(pastLen + i%seq)
	}
	table := prefixTableOf(t, m, site)

	mk := func(tensor *rt.Tensor, err error) *rt.Tensor {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return tensor
	}
	floats := func(dt dtype.Type, shape []int64, v []float32) *rt.Tensor {
		if dt == dtype.Float16 {
			return mk(rt.NewFloat16FromFloat32(shape, v))
		}
		return mk(rt.NewFloat32(shape, v))
	}
	mine := map[string]*rt.Tensor{"input_ids": mk(rt.NewInt64([]int64{int64(batch), int64(seq)}, ids))}
	theirs := map[string]*rt.Tensor{"input_ids": mine["input_ids"]}
	if base.Input("attention_mask") != nil {
		mine["attention_mask"] = mk(rt.NewInt64([]int64{int64(batch), int64(pastLen + seq)}, mask))
		padded := make([]int64, 0, batch*(P+pastLen+seq))
		for b := range batch {
			for range P {
				padded = append(padded, 1)
			}
			padded = append(padded, mask[b*(pastLen+seq):(b+1)*(pastLen+seq)]...)
		}
		theirs["attention_mask"] = mk(rt.NewInt64([]int64{int64(batch), int64(P + pastLen + seq)}, padded))
	}
	if base.Input("position_ids") != nil {
		mine["position_ids"] = mk(rt.NewInt64([]int64{int64(batch), int64(seq)}, pos))
		shifted := make([]int64, len(pos))
		for i, p := range pos {
			shifted[i] = p + int64(P)
		}
		theirs["position_ids"] = mk(rt.NewInt64([]int64{int64(batch), int64(seq)}, shifted))
	}
	kv, d := c.KVHeads(), c.HeadDim()
	randPast := func() []float32 {
		v := make([]float32, batch*kv*pastLen*d)
		for i := range v {
			v[i] = float32(rng.NormFloat64())
		}
		return v
	}
	for i, name := range site.Past {
		if site.Stacked {
			k, v := randPast(), randPast()
			if !site.ReplacedPast {
				mine[name] = floats(site.KVDType, []int64{2, int64(batch), int64(kv), int64(pastLen), int64(d)}, slices.Concat(k, v))
			}
			both := slices.Concat(prefixedPast(c, table, i, 0, k, batch, pastLen), prefixedPast(c, table, i, 1, v, batch, pastLen))
			theirs[name] = floats(site.KVDType, []int64{2, int64(batch), int64(kv), int64(P + pastLen), int64(d)}, both)
			continue
		}
		pv := randPast()
		if !site.ReplacedPast {
			mine[name] = floats(site.KVDType, []int64{int64(batch), int64(kv), int64(pastLen), int64(d)}, pv)
		}
		theirs[name] = floats(site.KVDType, []int64{int64(batch), int64(kv), int64(P + pastLen), int64(d)}, prefixedPast(c, table, i/2, i%2, pv, batch, pastLen))
	}
	got = run(t, session(t, m), mine)
	want = run(t, session(t, base), theirs)
	for _, name := range site.Present {
		want[name] = dropPrefix(t, want[name], int(P), site.Stacked)
	}
	for name := range want {
		if !m.IsGraphOutput(name) {
			delete(want, name)
		}
	}
	return got, want, mine
}

// dropPrefix removes the first P positions of a present output's
// sequence axis (2, or 3 when stacked).
func dropPrefix(t testing.TB, x *rt.Tensor, P int, stacked bool) *rt.Tensor {
	t.Helper()
	shape := x.Shape()
	axis := 2
	if stacked {
		axis = 3
	}
	outer := 1
	for _, s := range shape[:axis] {
		outer *= int(s)
	}
	total, inner := int(shape[axis]), 1
	for _, s := range shape[axis+1:] {
		inner *= int(s)
	}
	src := x.ToFloat64()
	var dst []float64
	for o := range outer {
		dst = append(dst, src[(o*total+P)*inner:(o+1)*total*inner]...)
	}
	shape[axis] -= int64(P)
	out, err := rt.NewFloat64(shape, dst)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestPrefixLayout checks the table's column order directly: with a table
// whose every entry names its own column, the key of layer l, head h is
// read from columns ((2l)·kv + h)·D + e and its value from
// ((2l+1)·kv + h)·D + e, as HF PEFT's view/permute/split unpacks it.
func TestPrefixLayout(t *testing.T) {
	needORT(t)
	m, err := tinyLlama()
	if err != nil {
		t.Fatal(err)
	}
	site, _, err := InjectPrefix(m, adapter.PrefixConfig{NumPrefixTokens: 2})
	if err != nil {
		t.Fatal(err)
	}
	c := site.Config
	if c.NumHiddenLayers != 2 || c.KVHeads() != 2 || c.NumAttentionHeads != 4 || c.HeadDim() != 4 || c.HiddenSize != 16 {
		t.Fatalf("completed config: got layers %d, kv heads %d, heads %d, head dim %d, hidden %d; want 2, 2, 4, 4, 16",
			c.NumHiddenLayers, c.KVHeads(), c.NumAttentionHeads, c.HeadDim(), c.HiddenSize)
	}
	P, w := c.NumPrefixTokens, c.TableWidth()
	if w != 2*2*2*4 {
		t.Fatalf("table width: got %d want %d", w, 2*2*2*4)
	}
	table := make([]float32, P*w)
	for i := range table {
		table[i] = float32(i)
	}
	if err := graph.SetFloat32s(m.Initializer(site.Prompt), table); err != nil {
		t.Fatal(err)
	}
	// Expose the per-layer prefix values as outputs.
	for _, name := range site.Past {
		for _, n := range m.Graph().Node {
			if n.OpType == "Concat" && len(n.Input) == 2 && n.Input[1] == name {
				m.AddOutput(&onnxpb.ValueInfoProto{Name: n.Input[0], Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{
					TensorType: &onnxpb.TypeProto_Tensor{ElemType: int32(dtype.Float32)}}}})
			}
		}
	}
	s := session(t, m)
	out := run(t, s, feedsFor(t, s, 1, 2, 0, 1))
	for i, name := range site.Past {
		layer, kind := i/2, i%2
		var got []float32
		for _, n := range m.Graph().Node {
			if n.OpType == "Concat" && len(n.Input) == 2 && n.Input[1] == name {
				got = out[n.Input[0]].Float32()
			}
		}
		for h := range 2 {
			for p := range P {
				for e := range 4 {
					want := float32(p*w + ((2*layer+kind)*2+h)*4 + e)
					if g := got[(h*P+p)*4+e]; g != want {
						t.Fatalf("%s [0,%d,%d,%d]: got table entry %g want %g", name, h, p, e, g, want)
					}
				}
			}
		}
	}
}

// TestPrefixDropout checks that prefix dropout changes nothing by default,
// and that with the training-mode input true it zeroes about a fraction p
// of the prefix values and scales the others by 1/(1-p), on the LLaMA
// builder (opset 17) and the stacked-past GPT-2 export (opset 11).
func TestPrefixDropout(t *testing.T) {
	needORT(t)
	const p = 0.5
	for _, tc := range []struct {
		name string
		load func(t testing.TB) *graph.Model
		P    int // 1024 and 1152 prefix values; GPT-2 has 8 positions
	}{
		{"llama-opset17", builtModel(tinyLlama), 16},
		{"gpt2-past-opset11", func(t testing.TB) *graph.Model { return realModel(t, "gpt2-past-torch16/model.onnx") }, 6},
	} {
		P := tc.P
		t.Run(tc.name, func(t *testing.T) {
			plain := tc.load(t)
			dropped := plain.Clone()
			if _, _, err := InjectPrefix(plain, adapter.PrefixConfig{NumPrefixTokens: P}, PrefixSeed(3)); err != nil {
				t.Fatal(err)
			}
			site, _, err := InjectPrefix(dropped, adapter.PrefixConfig{NumPrefixTokens: P, PrefixDropout: p}, PrefixSeed(3))
			if err != nil {
				t.Fatal(err)
			}
			if site.TrainingMode != PrefixTrainingModeInput {
				t.Fatalf("training-mode input: got %q want %q", site.TrainingMode, PrefixTrainingModeInput)
			}
			// Expose the dropped-out prefix, [2L, B, kv, P, D].
			var prefix string
			for _, n := range dropped.Graph().Node {
				if n.OpType == "Gather" && strings.HasPrefix(n.Name, "/prefix_encoder/layers.") {
					prefix = n.Input[0]
				}
			}
			dropped.AddOutput(&onnxpb.ValueInfoProto{Name: prefix, Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{
				TensorType: &onnxpb.TypeProto_Tensor{ElemType: int32(dtype.Float32)}}}})
			table := prefixTableOf(t, dropped, site)

			sp, sd := session(t, plain), session(t, dropped)
			feeds := feedsFor(t, sp, 2, 1, 1, 4)
			clampIDs(t, feeds)
			want := run(t, sp, feeds)
			got := run(t, sd, feeds)
			delete(got, prefix)
			if diff, where := maxRelDiff(t, got, want); diff > 1e-6 {
				t.Errorf("inference (no training-mode feed): dropout changed %s by %g", where, diff)
			}
			on, err := rt.NewBool(nil, []bool{true})
			if err != nil {
				t.Fatal(err)
			}
			feeds[PrefixTrainingModeInput] = on
			out := run(t, sd, feeds)
			if diff, _ := maxRelDiff(t, out, want); diff < 1e-4 {
				t.Errorf("training mode: outputs changed by %g; dropout %g should change them", diff, p)
			}
			c := site.Config
			kv, d, w := c.KVHeads(), c.HeadDim(), c.TableWidth()
			vals := out[prefix].ToFloat64()
			zeros := 0
			for i, v := range vals {
				e := i % d
				q := i / d % P
				h := i / d / P % kv
				kind := i / d / P / kv / 2 // [2L, B, kv, P, D]: skip the batch
				x := float64(table[q*w+(kind*kv+h)*d+e])
				switch {
				case v == 0:
					zeros++
				case math.Abs(v-x/(1-p)) > 1e-5*math.Max(1, math.Abs(x)):
					t.Fatalf("training mode: prefix value %d is %g, want 0 or %g", i, v, x/(1-p))
				}
			}
			if frac := float64(zeros) / float64(len(vals)); math.Abs(frac-p) > 0.06 {
				t.Errorf("training mode: %.3f of %d prefix values dropped, want about %g", frac, len(vals), p)
			}
		})
	}
}

// clampIDs keeps input_ids below 16, inside every model's vocabulary.
func clampIDs(t testing.TB, feeds map[string]*rt.Tensor) {
	t.Helper()
	ids := feeds["input_ids"]
	v := ids.Int64()
	for i := range v {
		v[i] %= 16
	}
}

// TestPrefixErrors checks that a model or config that cannot take a
// prefix is refused with a message that names the model and the values at
// fault, and that the model is left as it was.
func TestPrefixErrors(t *testing.T) {
	dir := t.TempDir()
	noCache := models.LlamaTiny()
	noCache.NoCache = true
	nc, err := models.Llama(noCache)
	if err != nil {
		t.Fatal(err)
	}
	ncPath := dir + "/nocache.onnx"
	if err := nc.Save(ncPath, graph.SaveOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		reason string
		load   func(t testing.TB) *graph.Model
		cfg    adapter.PrefixConfig
		opts   []PrefixOption
		want   []string
	}{
		{"model without past inputs", func(t testing.TB) *graph.Model {
			m, err := graph.Load(ncPath)
			if err != nil {
				t.Fatal(err)
			}
			return m
		}, adapter.PrefixConfig{NumPrefixTokens: 2}, nil, []string{ncPath, "no past key/value inputs", "input_ids, attention_mask, position_ids"}},
		{"layers mismatch", builtModel(tinyLlama), adapter.PrefixConfig{NumPrefixTokens: 2, NumHiddenLayers: 3}, nil,
			[]string{"num_hidden_layers is 3", "past inputs for 2 layers"}},
		{"kv heads mismatch", builtModel(tinyLlama), adapter.PrefixConfig{NumPrefixTokens: 2, MultiQueryGroupNum: 4}, nil,
			[]string{"multi_query_group_num (KV heads) is 4", "2 KV heads"}},
		{"head dim mismatch", builtModel(tinyLlama), adapter.PrefixConfig{NumPrefixTokens: 2, HiddenSize: 16, NumAttentionHeads: 2}, nil,
			[]string{"head dim 8", "head dim 4"}},
		{"head dim option mismatch", builtModel(tinyLlama), adapter.PrefixConfig{NumPrefixTokens: 2}, []PrefixOption{PrefixHeadDim(8)},
			[]string{"set to 8", "head dim 4"}},
		{"no tokens", builtModel(tinyLlama), adapter.PrefixConfig{}, nil, []string{"num_prefix_tokens must be positive"}},
		{"negative projection width", builtModel(tinyLlama), adapter.PrefixConfig{NumPrefixTokens: 2, PrefixProjection: true, PrefixProjectionHiddenSize: -1}, nil,
			[]string{"prefix_projection_hidden_size"}},
		{"tensor parallel", builtModel(tinyLlama), adapter.PrefixConfig{NumPrefixTokens: 2, TensorParallelDegree: 2}, nil,
			[]string{"tensor_parallel_degree 2"}},
		{"bad head dim option", builtModel(tinyLlama), adapter.PrefixConfig{NumPrefixTokens: 2}, []PrefixOption{PrefixHeadDim(0)},
			[]string{"head dim must be positive"}},
	} {
		m := tc.load(t)
		before, err := m.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		_, _, err = InjectPrefix(m, tc.cfg, tc.opts...)
		if err == nil {
			t.Errorf("%s: got no error", tc.reason)
			continue
		}
		msg := err.Error()
		if !strings.HasPrefix(msg, "rewrite: ") {
			t.Errorf("%s: error %q does not start with \"rewrite: \"", tc.reason, msg)
		}
		for _, w := range tc.want {
			if !strings.Contains(msg, w) {
				t.Errorf("%s: error %q does not contain %q", tc.reason, msg, w)
			}
		}
		after, err := m.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if string(before) != string(after) {
			t.Errorf("%s: the failed injection changed the model", tc.reason)
		}
	}
}

// TestPrefixTwice checks that a prefixed model refuses a second prefix.
func TestPrefixTwice(t *testing.T) {
	m, err := tinyLlama()
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := InjectPrefix(m, adapter.PrefixConfig{NumPrefixTokens: 2}); err != nil {
		t.Fatal(err)
	}
	_, _, err = InjectPrefix(m, adapter.PrefixConfig{NumPrefixTokens: 2})
	if err == nil || !strings.Contains(err.Error(), "already carries a prefix") {
		t.Errorf("second injection: got error %v, want one saying the model already carries a prefix", err)
	}
}

// TestPrefixSaveApplyRoundTrip saves the adapter of a prefixed model in
// the HF PEFT layout, loads it, applies it to a fresh base model, and
// checks that the outputs are identical, after a save and load of the
// model too.
func TestPrefixSaveApplyRoundTrip(t *testing.T) {
	needORT(t)
	for _, tc := range []struct {
		name string
		load func(t testing.TB) *graph.Model
		cfg  adapter.PrefixConfig
	}{
		{"llama", builtModel(tinyLlama), adapter.PrefixConfig{NumPrefixTokens: 3}},
		{"llama-projection", builtModel(tinyLlama), adapter.PrefixConfig{NumPrefixTokens: 2, PrefixProjection: true, PrefixProjectionHiddenSize: 5, PrefixDropout: 0.1}},
		{"llama-fp16-params", builtModel(llamaFP16), adapter.PrefixConfig{NumPrefixTokens: 2, DType: dtype.Float16}},
		{"gpt2-past", func(t testing.TB) *graph.Model { return realModel(t, "gpt2-past-torch16/model.onnx") }, adapter.PrefixConfig{NumPrefixTokens: 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := tc.load(t)
			base := m.Clone()
			site, sum, err := InjectPrefix(m, tc.cfg, PrefixSeed(9))
			if err != nil {
				t.Fatal(err)
			}
			setPrefixParams(t, m, site, 11)
			dir := t.TempDir()
			path := dir + "/prefixed.onnx"
			if err := m.Save(path, graph.SaveOptions{}); err != nil {
				t.Fatal(err)
			}
			loaded, err := graph.Load(path)
			if err != nil {
				t.Fatal(err)
			}
			defer loaded.Close()
			ad, err := ExtractPrefix(loaded)
			if err != nil {
				t.Fatal(err)
			}
			if err := adapter.SaveDir(dir+"/adapter", ad); err != nil {
				t.Fatal(err)
			}
			back, err := adapter.LoadDir(dir + "/adapter")
			if err != nil {
				t.Fatal(err)
			}
			applied := base.Clone()
			site2, sum2, err := ApplyPrefix(applied, back)
			if err != nil {
				t.Fatal(err)
			}
			if sum2.String() != sum.String() {
				t.Errorf("summary: applied %v, injected %v", sum2, sum)
			}
			if site2.Config != site.Config {
				t.Errorf("config: applied %+v, injected %+v", site2.Config, site.Config)
			}
			s1, s2 := session(t, loaded), session(t, applied)
			feeds := feedsFor(t, s1, 2, 1, 1, 3)
			clampIDs(t, feeds)
			if diff, where := maxRelDiff(t, run(t, s2, feeds), run(t, s1, feeds)); diff != 0 {
				t.Errorf("applied and injected models differ by %g in %s", diff, where)
			}
		})
	}
}

// TestApplyPrefixErrors checks adapters that do not fit.
func TestApplyPrefixErrors(t *testing.T) {
	m, err := tinyLlama()
	if err != nil {
		t.Fatal(err)
	}
	lora := adapter.NewLoRA(config(4, 8, ".*q_proj"))
	if _, _, err := ApplyPrefix(m, lora); err == nil || !strings.Contains(err.Error(), "not a prefix adapter") {
		t.Errorf("LoRA adapter: got %v, want \"not a prefix adapter\"", err)
	}
	// A table for 3 layers of 2 KV heads of width 4 on a 2-layer model.
	cfg := adapter.PrefixConfig{NumPrefixTokens: 2, NumHiddenLayers: 3, NumAttentionHeads: 4, MultiQueryGroupNum: 2, HiddenSize: 16}
	ad := adapter.NewPrefix(cfg)
	ad.Prompt = adapter.Zeros(2, int64(cfg.TableWidth()))
	if _, _, err := ApplyPrefix(m, ad); err == nil || !strings.Contains(err.Error(), "num_hidden_layers is 3") {
		t.Errorf("3-layer adapter on a 2-layer model: got %v", err)
	}
	// PaddleNLP semantics: multi_query_group_num 0 means as many KV heads
	// as heads, here 4; the model has 2, so the table is too wide.
	cfg = adapter.PrefixConfig{NumPrefixTokens: 2, NumHiddenLayers: 2, NumAttentionHeads: 4, HiddenSize: 16}
	ad = adapter.NewPrefix(cfg)
	ad.Prompt = adapter.Zeros(2, int64(cfg.TableWidth()))
	if _, _, err := ApplyPrefix(m, ad); err == nil || !strings.Contains(err.Error(), "needs [2 32]") {
		t.Errorf("adapter sized by query heads: got %v, want the shape it needs", err)
	}
}

// TestSummarizePrefix checks the parameter counts against a hand count.
func TestSummarizePrefix(t *testing.T) {
	m, err := tinyLlama()
	if err != nil {
		t.Fatal(err)
	}
	all := models.LlamaTiny().NumParams()
	_, sum, err := InjectPrefix(m, adapter.PrefixConfig{NumPrefixTokens: 3, PrefixProjection: true, PrefixProjectionHiddenSize: 8, PrefixDropout: 0.1})
	if err != nil {
		t.Fatal(err)
	}
	// prompt 3×16, W1 16×8, B1 8, W2 8×32, B2 32: the table is 2 layers ×
	// 2 × 2 KV heads × head dim 4 = 32 wide.
	want := int64(3*16 + 16*8 + 8 + 8*32 + 32)
	if sum.TrainableParams != want || sum.AllParams != all+want {
		t.Errorf("got trainable %d all %d, want %d and %d", sum.TrainableParams, sum.AllParams, want, all+want)
	}
	if got := sum.Trainable(); !slices.Equal(got, []string{PromptEmbeddingsName, prefixW1Name, prefixB1Name, prefixW2Name, prefixB2Name}) {
		t.Errorf("trainable: got %q", got)
	}
	again, err := SummarizePrefix(m)
	if err != nil {
		t.Fatal(err)
	}
	if again.String() != sum.String() {
		t.Errorf("SummarizePrefix: got %q want %q", again, sum)
	}
	if _, err := SummarizePrefix(must(tinyLlama())); err == nil || !strings.Contains(err.Error(), "carries no prefix") {
		t.Errorf("base model: got %v, want \"carries no prefix\"", err)
	}
}

func must(m *graph.Model, err error) *graph.Model {
	if err != nil {
		panic(err)
	}
	return m
}

// TestPrefixProjectionDefaultWidth checks that a projection without a
// width takes the hidden size, as HF PEFT's encoder_hidden_size does.
func TestPrefixProjectionDefaultWidth(t *testing.T) {
	site, _, err := InjectPrefix(must(tinyLlama()), adapter.PrefixConfig{NumPrefixTokens: 2, PrefixProjection: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := site.Config.PrefixProjectionHiddenSize; got != 16 {
		t.Errorf("projection width: got %d want the hidden size 16", got)
	}
}
