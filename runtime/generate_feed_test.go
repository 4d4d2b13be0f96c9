package runtime_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/feed"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/models"
	"github.com/peftonnx/peftonnx/rewrite"
	rt "github.com/peftonnx/peftonnx/runtime"
)

// decoderVariants are decoders whose inputs are not LLaMA's int64 ones
// with past_key_values: the shapes generation must follow the model in.
func decoderVariants() []struct {
	name  string
	build func() (*graph.Model, error)
	info  string // a part of Info's formatted fields
} {
	llama := func(edit func(*graph.Model) error) func() (*graph.Model, error) {
		return func() (*graph.Model, error) {
			c := models.LlamaTiny()
			c.InitStd = genStd
			m, err := models.Llama(c)
			if err == nil {
				err = edit(m)
			}
			return m, err
		}
	}
	return []struct {
		name  string
		build func() (*graph.Model, error)
		info  string
	}{
		{"int32 inputs", llama(func(m *graph.Model) error {
			return models.Int32Inputs(m, "input_ids", "attention_mask", "position_ids")
		}),
			"Layout:past_key_values.{i}.key/value"},
		{"whisper names", llama(models.WhisperCacheNames), "Layout:named caches Past:[past_key_self_0 past_value_self_0 past_key_self_1 past_value_self_1] Present:[present_key_self_0 present_value_self_0 present_key_self_1 present_value_self_1] Layers:2 KVHeads:2 HeadDim:4"},
		{"single past", llama(models.SinglePast), "Layout:named caches Past:[past] Present:[present] Layers:1 KVHeads:2 HeadDim:4"},
		{"hybrid with gaps", func() (*graph.Model, error) {
			c := models.HybridTiny()
			c.InitStd = genStd
			return models.Hybrid(c)
		}, "Layout:past_key_values.{i}.key/value Past:[past_conv.0 past_key_values.1.key past_key_values.1.value past_conv.2 past_key_values.3.key past_key_values.3.value] Present:[present_conv.0 present.1.key present.1.value present_conv.2 present.3.key present.3.value] Layers:2 KVHeads:2 HeadDim:4"},
		{"hybrid with a prefix", func() (*graph.Model, error) {
			c := models.HybridTiny()
			c.InitStd = genStd
			m, err := models.Hybrid(c)
			if err == nil {
				_, _, err = rewrite.InjectPrefix(m, adapter.PrefixConfig{NumPrefixTokens: 3}, rewrite.PrefixSeed(5))
			}
			return m, err
		}, "Layers:2 KVHeads:2 HeadDim:4"},
	}
}

// TestGenerateVariants generates with each variant and checks the tokens
// against generation without a cache (the whole sequence every step, with
// empty caches and zero states), prompt in one run and token by token.
func TestGenerateVariants(t *testing.T) {
	for _, v := range decoderVariants() {
		t.Run(v.name, func(t *testing.T) {
			m, err := v.build()
			s := modelSession(t, m, err)
			g := newGenerator(t, s)
			if got := fmt.Sprintf("%+v", g.Info()); !strings.Contains(got, v.info) {
				t.Errorf("info: got %s, want it to contain %s", got, v.info)
			}
			prompt := []int64{3, 17, 5, 29, 8}
			const n = 6
			want := uncachedByFeeds(t, s, prompt, n)
			for _, per := range []int{0, 1} {
				got, err := g.Generate(context.Background(), prompt, rt.GenerateOptions{MaxNewTokens: n, TokensPerRun: per})
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(got, want) {
					t.Errorf("tokens per run %d: cached %v, uncached %v", per, got, want)
				}
			}
		})
	}
}

// TestGenerateDefaults checks the lines that say what generation feeds
// by default.
func TestGenerateDefaults(t *testing.T) {
	for _, tc := range []struct {
		name string
		want []string
	}{
		{"int32 inputs", []string{"input_ids int32[batch_size sequence_length]: the prompt's and the generated token ids",
			"attention_mask int32[batch_size total_sequence_length]: ones", "position_ids int32[batch_size sequence_length]: 0, 1, 2"}},
		{"hybrid with gaps", []string{"past_conv.0 float32[batch_size 16 3]: zeros, then present_conv.0 of the step before"}},
		{"whisper names", nil},
	} {
		for _, v := range decoderVariants() {
			if v.name != tc.name {
				continue
			}
			m, err := v.build()
			info := newGenerator(t, modelSession(t, m, err)).Info()
			got := strings.Join(info.Defaults, "\n")
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("%s: defaults lack %q:\n%s", tc.name, w, got)
				}
			}
			if tc.want == nil && info.Defaults != nil {
				t.Errorf("%s: got defaults %q, want none", tc.name, info.Defaults)
			}
		}
	}
}

// uncachedByFeeds generates n tokens greedily without carrying anything:
// every step runs the whole sequence so far, each input fed as package
// feed says (ids, ones, positions, empty caches, zero states), in the
// model's types.
func uncachedByFeeds(t *testing.T, s *rt.Session, prompt []int64, n int) []int64 {
	t.Helper()
	var ins, outs []feed.Input
	for _, v := range s.Inputs() {
		ins = append(ins, feed.Input(v))
	}
	for _, v := range s.Outputs() {
		outs = append(outs, feed.Input(v))
	}
	plan := feed.Classify(ins, outs)
	seq := slices.Clone(prompt)
	var toks []int64
	for range n {
		l := len(seq)
		in := map[string]*rt.Tensor{}
		for _, slot := range plan.Slots() {
			shape, err := slot.FeedShape(1, l, 0)
			if err != nil {
				t.Fatal(err)
			}
			switch slot.Role {
			case feed.TokenIDs:
				in[slot.Name] = must(rt.FromInt64s(slot.DType, shape, seq))
			case feed.AttentionMask:
				in[slot.Name] = must(rt.FromInt64s(slot.DType, shape, feed.Ones(l)))
			case feed.Positions:
				in[slot.Name] = must(rt.FromInt64s(slot.DType, shape, feed.PositionIDs(1, l, 0)))
			default:
				in[slot.Name] = must(rt.Zeros(slot.DType, shape))
			}
		}
		out, err := s.Run(in, []string{"logits"})
		if err != nil {
			t.Fatal(err)
		}
		logits := out["logits"].ToFloat32()
		vocab := len(logits) / l
		last := logits[(l-1)*vocab:]
		best := 0
		for j, x := range last {
			if x > last[best] {
				best = j
			}
		}
		toks = append(toks, int64(best))
		seq = append(seq, int64(best))
	}
	return toks
}

// TestGenerateStateErrors checks the errors about caches and states.
func TestGenerateStateErrors(t *testing.T) {
	m, err := models.Hybrid(models.HybridTiny())
	if err != nil {
		t.Fatal(err)
	}
	g := m.Graph()
	for i, o := range g.Output {
		if o.GetName() == "present_conv.2" {
			g.Output = append(g.Output[:i:i], g.Output[i+1:]...)
			break
		}
	}
	_, err = rt.NewGenerator(modelSession(t, m, nil))
	if err == nil || !strings.Contains(err.Error(), `cache input "past_conv.2" has no matching output "present_conv.2"`) {
		t.Errorf("a state without its present output: got %v", err)
	}
	m, _ = models.Hybrid(models.HybridTiny())
	for _, in := range m.Graph().Input {
		if in.GetName() == "past_conv.0" {
			in.GetType().GetTensorType().GetShape().GetDim()[1].Value = nil // a dynamic width that no output sizes
		}
	}
	for _, o := range m.Graph().Output {
		if o.GetName() == "present_conv.0" {
			o.GetType().GetTensorType().GetShape().GetDim()[1].Value = nil
		}
	}
	_, err = rt.NewGenerator(modelSession(t, m, nil))
	if err == nil || !strings.Contains(err.Error(), "cannot tell the size of dimension 1") {
		t.Errorf("a state of unknown width: got %v", err)
	}
}
