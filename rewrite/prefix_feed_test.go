package rewrite

import (
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/feed"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/models"
	rt "github.com/peftonnx/peftonnx/runtime"
)

// hybridTiny is the hybrid decoder: convolution states on layers 0 and 2,
// KV caches on layers 1 and 3 only.
func hybridTiny() (*graph.Model, error) {
	c := models.HybridTiny()
	c.InitStd = 0.5
	return models.Hybrid(c)
}

// whisperLlama is the tiny LLaMA with its cache named as Whisper's
// decoder names it (past_key_self_{i}).
func whisperLlama() (*graph.Model, error) {
	m, err := models.Llama(models.LlamaTiny())
	if err == nil {
		err = models.WhisperCacheNames(m)
	}
	return m, err
}

// TestPrefixCacheNamings injects a prefix into decoders whose caches are
// named otherwise, or cover some layers only: the prefix goes to each
// cache, in layer order, and the states are left alone.
func TestPrefixCacheNamings(t *testing.T) {
	tests := []struct {
		name  string
		build func() (*graph.Model, error)
		past  string
	}{
		{"hybrid with gaps", hybridTiny, "past_key_values.1.key past_key_values.1.value past_key_values.3.key past_key_values.3.value"},
		{"whisper names", whisperLlama, "past_key_self_0 past_value_self_0 past_key_self_1 past_value_self_1"},
	}
	for _, tc := range tests {
		m, err := tc.build()
		if err != nil {
			t.Fatal(err)
		}
		site, _, err := InjectPrefix(m, adapter.PrefixConfig{NumPrefixTokens: 2})
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := strings.Join(site.Past, " "); got != tc.past || site.Config.NumHiddenLayers != 2 {
			t.Errorf("%s: prefix on %s for %d layers, want %s for 2", tc.name, got, site.Config.NumHiddenLayers, tc.past)
		}
		if err := m.Validate(); err != nil {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
	m, err := models.Llama(models.LlamaTiny())
	if err != nil {
		t.Fatal(err)
	}
	if err := models.SinglePast(m); err != nil {
		t.Fatal(err)
	}
	_, _, err = InjectPrefix(m, adapter.PrefixConfig{NumPrefixTokens: 2})
	if err == nil || !strings.Contains(err.Error(), "past input past float32[4 batch_size 2 past_sequence_length 4] holds a cache that prefix injection cannot split by layer") {
		t.Errorf("one past for every layer: got %v", err)
	}
}

// TestPrefixPromptInOneRun runs prefixed decoders as generation does, and
// checks that a prompt of several tokens in one run, also after a past of
// several tokens, gives the logits of feeding the same tokens one per run:
// on the onnxruntime-genai export, whose causal mask is built for the new
// tokens alone (injection widens it), on the hybrid decoder (states and
// caches carried), and on the builder's LLaMA.
func TestPrefixPromptInOneRun(t *testing.T) {
	needORT(t)
	for _, tc := range []struct {
		name string
		load func(t testing.TB) *graph.Model
		tol  float64
	}{
		{"tiny-llama-genai-fp16", func(t testing.TB) *graph.Model { return realModel(t, "tiny-llama-genai-fp16/model.onnx") }, 2e-3},
		{"hybrid", builtModel(hybridTiny), 1e-5},
		{"llama", builtModel(tinyLlama), 1e-5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := tc.load(t)
			site, _, err := InjectPrefix(m, adapter.PrefixConfig{NumPrefixTokens: 3}, PrefixSeed(4))
			if err != nil {
				t.Fatal(err)
			}
			setPrefixParams(t, m, site, 8)
			s := session(t, m)
			ids := []int64{1, 9, 4, 12, 7, 3}
			chunks := func(sizes ...int) []float64 {
				var logits []float64
				var carried map[string]*rt.Tensor
				at := 0
				for _, n := range sizes {
					out := stepModel(t, s, ids[at:at+n], at, carried)
					logits = append(logits, out["logits"].ToFloat64()...)
					carried, at = out, at+n
				}
				return logits
			}
			oneByOne := chunks(1, 1, 1, 1, 1, 1)
			for _, sizes := range [][]int{{6}, {2, 4}, {3, 1, 2}} {
				got := chunks(sizes...)
				for i := range got {
					if math.Abs(got[i]-oneByOne[i]) > tc.tol*math.Max(1, math.Abs(oneByOne[i])) {
						t.Fatalf("runs of %v tokens: logit %d is %g, one token per run %g", sizes, i, got[i], oneByOne[i])
					}
				}
			}
			if tc.name == "tiny-llama-genai-fp16" && len(site.WidenedMasks) != 1 {
				t.Errorf("widened masks: got %q, want the input_ids subgraph's Expand", site.WidenedMasks)
			}
			if tc.name != "tiny-llama-genai-fp16" && len(site.WidenedMasks) != 0 {
				t.Errorf("widened masks: got %q, want none: the model builds its mask from the attention mask", site.WidenedMasks)
			}
		})
	}
}

// stepModel runs a decoder on the tokens ids (one row) after past tokens,
// each input fed as package feed says, the caches and states from
// carried's present outputs (empty and zero where carried is nil).
func stepModel(t testing.TB, s *rt.Session, ids []int64, past int, carried map[string]*rt.Tensor) map[string]*rt.Tensor {
	t.Helper()
	var ins, outs []feed.Input
	for _, v := range s.Inputs() {
		ins = append(ins, feed.Input(v))
	}
	for _, v := range s.Outputs() {
		outs = append(outs, feed.Input(v))
	}
	in := map[string]*rt.Tensor{}
	n := len(ids)
	for _, slot := range feed.Classify(ins, outs).Slots() {
		if slot.Optional {
			continue
		}
		shape, err := slot.FeedShape(1, n, past)
		if err != nil {
			t.Fatal(err)
		}
		var x *rt.Tensor
		switch slot.Role {
		case feed.TokenIDs:
			x, err = rt.FromInt64s(slot.DType, shape, ids)
		case feed.AttentionMask:
			x, err = rt.FromInt64s(slot.DType, shape, feed.Ones(past+n))
		case feed.Positions:
			x, err = rt.FromInt64s(slot.DType, shape, feed.PositionIDs(1, n, past))
		default:
			if carried != nil && slot.Present != "" {
				x = carried[slot.Present]
			} else {
				x, err = rt.Zeros(slot.DType, shape)
			}
		}
		if err != nil {
			t.Fatal(err)
		}
		in[slot.Name] = x
	}
	return run(t, s, in)
}

// TestNewTokenMasks checks which Expand nodes injection widens: the
// genai export's causal triangle, not its expanded attention mask, and
// nothing in models that build their mask from the attention mask.
func TestNewTokenMasks(t *testing.T) {
	m := realModel(t, "tiny-llama-genai-fp16/model.onnx")
	past, err := findPast(m)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, n := range newTokenMasks(m, past.names) {
		got = append(got, n.Name)
	}
	if want := []string{"/model/attn_mask_reformat/input_ids_subgraph/Expand"}; !slices.Equal(got, want) {
		t.Errorf("genai: got %q want %q", got, want)
	}
	for _, build := range []func() (*graph.Model, error){tinyLlama, gpt2Tiny, hybridTiny} {
		m, err := build()
		if err != nil {
			t.Fatal(err)
		}
		past, err := findPast(m)
		if err != nil {
			t.Fatal(err)
		}
		if found := newTokenMasks(m, past.names); len(found) != 0 {
			t.Errorf("%s: found %s, want nothing", m.Graph().Name, found[0].Name)
		}
	}
}
