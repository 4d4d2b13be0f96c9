package rewrite

import (
	"maps"
	"slices"
	"strings"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
)

// PrefixTrainingModeInput is the bool scalar graph input that switches
// prefix dropout on. Its default initializer is false, so inference needs
// no feed; a trainer feeds true.
const PrefixTrainingModeInput = "prefix_training_mode"

// PrefixMetadataKey is the model metadata_props key under which a prefixed
// model records its PrefixSite, so that ExtractPrefix and SummarizePrefix
// work on a model loaded from a file. ONNX Runtime ignores it.
const PrefixMetadataKey = "peftonnx.prefix"

// Names of the prefix parameters in a prefixed graph.
const (
	PromptEmbeddingsName = "prompt_embeddings"
	prefixW1Name         = "prefix_encoder.transform.0.weight"
	prefixB1Name         = "prefix_encoder.transform.0.bias"
	prefixW2Name         = "prefix_encoder.transform.2.weight"
	prefixB2Name         = "prefix_encoder.transform.2.bias"
)

// PrefixSite records what InjectPrefix did to a model.
type PrefixSite struct {
	// Config is the injected config, completed from the graph: layers,
	// KV heads, heads, hidden size.
	Config adapter.PrefixConfig `json:"config"`
	// Stacked reports past inputs stacked per layer, [2, B, kv, P, D]
	// (past_{i}); else each layer has a key and a value input.
	Stacked bool `json:"stacked,omitempty"`
	// Past names the past inputs in layer order: key, value, key, … per
	// layer, or one stacked input per layer.
	Past []string `json:"past"`
	// ReplacedPast reports that the past inputs were removed
	// (PrefixReplacePast); else the prefix is concatenated in front of them.
	ReplacedPast bool `json:"replaced_past,omitempty"`
	// Present names the outputs that the prefix positions are sliced off.
	Present []string `json:"present,omitempty"`
	// KVDType is the element type of the model's KV cache, ParamDType that
	// of the prefix parameters.
	KVDType    dtype.Type `json:"kv_dtype"`
	ParamDType dtype.Type `json:"param_dtype"`
	// Prompt names the prompt_embeddings initializer, and Projection the
	// encoder's W1, B1, W2 and B2, if any.
	Prompt     string   `json:"prompt"`
	Projection []string `json:"projection,omitempty"`
	// AttentionMask and PositionIDs name the inputs that the graph pads
	// and shifts; "" where the model has none.
	AttentionMask string `json:"attention_mask,omitempty"`
	PositionIDs   string `json:"position_ids,omitempty"`
	// TrainingMode names the dropout switch input, "" without dropout.
	TrainingMode string `json:"training_mode,omitempty"`
	// WidenedMasks names the Expand nodes of a causal mask built from the
	// new tokens alone (onnxruntime-genai's) whose data injection pads to
	// the past's length, so that prompts of any length run after the
	// prefix.
	WidenedMasks []string `json:"widened_masks,omitempty"`
	// Nodes and Initializers are what injection added: nodes by name and
	// helper constants (not the parameters).
	Nodes        []string `json:"nodes"`
	Initializers []string `json:"initializers,omitempty"`
}

// Trainable returns the names of the prefix parameters: prompt_embeddings,
// then the projection's W1, B1, W2 and B2.
func (s *PrefixSite) Trainable() []string {
	return append([]string{s.Prompt}, s.Projection...)
}

// PrefixOption is an Option; the name is kept for the options of prefix
// tuning.
type PrefixOption = Option

// PrefixSeed sets the seed that the fresh prefix parameters are drawn with.
// The default is 0. Each parameter draws from its own stream, derived from
// the seed and its name. It is WithSeed.
func PrefixSeed(seed uint64) PrefixOption {
	return WithSeed(seed)
}

// PrefixHeadDim states the width of one attention head, for a graph whose
// past inputs leave it dynamic and a config that does not give it through
// HiddenSize and NumAttentionHeads. Where the graph or the config shows
// the head dim, it must agree. It rejects d <= 0.
func PrefixHeadDim(d int) PrefixOption {
	return func(o *options) error {
		if d <= 0 {
			return errorf("prefix head dim must be positive, got %d", d)
		}
		o.headDim = d
		return nil
	}
}

// PrefixReplacePast removes the past inputs and feeds the prefix alone
// where they went, instead of concatenating it in front of them. The model
// then runs without a KV cache (training, or one-shot scoring).
func PrefixReplacePast() PrefixOption {
	return func(o *options) error {
		o.replacePast = true
		return nil
	}
}

// InjectPrefix gives m a trainable prefix, as PaddleNLP's
// PrefixModelForCausalLM and HF PEFT's PREFIX_TUNING do: every attention
// layer sees P extra key/value positions in front of the real ones. ONNX
// decoders already take such positions, their past_key_values inputs, and
// the prefix is fed there.
//
// The number of layers, the KV heads and the head dim come from the past
// inputs, the hidden size from the token embedding; the fields that cfg
// sets override, and one that contradicts the graph (NumHiddenLayers,
// MultiQueryGroupNum, HiddenSize/NumAttentionHeads as the head dim) is an
// error naming both values. MultiQueryGroupNum 0 takes the graph's KV
// heads, and PrefixProjectionHiddenSize 0 the hidden size (HF PEFT's
// default encoder_hidden_size). NumPrefixTokens must be set.
//
// The trainable initializer "prompt_embeddings" is the prefix table
// [P, layers·2·kv_heads·head_dim], HF PEFT's key and shape. Its row p holds
// prefix position p of every layer, and column
//
//	((2·layer + kind)·kv_heads + head)·head_dim + d    (kind 0 key, 1 value)
//
// holds element d of that head's key or value: per layer the key, then the
// value, each head after head. This is the order in which HF PEFT unpacks
// the table,
//
//	past_key_values = table.view(B, P, layers·2, kv_heads, D).permute(2, 0, 3, 1, 4).split(2)
//
// so that layer i takes index 2i as its key and 2i+1 as its value.
// (PaddleNLP's split(2) takes the halves instead, all keys and then all
// values: package adapter converts at the boundary of PaddleNLP's files.)
// The width follows the KV heads (multi_query_group_num), not the query
// heads.
//
// With PrefixProjection the table comes from HF's PrefixEncoder,
// Embedding → Linear → Tanh → Linear:
//
//	table = tanh(prompt_embeddings·W1 + B1)·W2 + B2
//
// where prompt_embeddings is [P, hidden_size], and W1 [hidden_size,
// projection_hidden] and W2 [projection_hidden, table width] are in graph
// layout ([in, out]) and named "prefix_encoder.transform.0.weight" and
// "prefix_encoder.transform.2.weight", the biases ".bias".
//
// The parameters are stored in cfg.DType (float32 by default), and the
// table is cast to the KV cache's type where that differs. It is broadcast
// over the batch, whose size comes from input_ids (else attention_mask or
// inputs_embeds), and, with PrefixDropout > 0, passes a dropout that is
// active only when the bool input PrefixTrainingModeInput is true (its
// default is false).
//
// prompt_embeddings starts N(0, 1), as torch.nn.Embedding does; the
// projection's weights and biases start U(-1/√in, 1/√in), as
// torch.nn.Linear does; each from a stream seeded by PrefixSeed and its
// name.
//
// The prefixed model keeps the base model's interface; the prefix is
// invisible to whoever feeds it:
//
//   - Past inputs stay. Each layer attends to concat(prefix, past) along
//     the sequence axis, so generation with a KV cache works, and a fresh
//     call passes an empty past (length 0). With PrefixReplacePast the
//     past inputs are removed and the prefix alone goes where they went.
//   - present outputs hold the real tokens only: the P prefix positions
//     are sliced off, so a present can be fed back as the next past.
//   - attention_mask keeps its meaning, one entry per real position (past
//     and sequence); the graph prepends P ones (pad_attention_mask).
//   - position_ids keep their meaning too, counted over real tokens from
//     0; the graph adds P, so the positions that the model sees continue
//     after the prefix. HF PEFT computes the same: it drops position_ids
//     for prompt learning, and the model counts the prefix as cached
//     tokens. Models that derive positions from the past length (the
//     stacked past_{i} GPT-2 export) shift the same way by themselves.
//
// So the prefixed model fed (input_ids, mask, positions, past) computes
// what the base model computes fed (input_ids, ones(P) ‖ mask,
// positions + P, prefix ‖ past), less the prefix positions of the presents.
//
// The returned Summary counts parameters as print_trainable_parameters
// does and lists the prefix parameters in Extra, so that
// Summary.Trainable names them for the trainer. The model's metadata
// records the site (PrefixMetadataKey). InjectPrefix changes nothing when
// it fails.
//
// Past inputs are the self-attention KV caches that package feed
// recognises: past_key_values.{i}.key and .value (or past_key_self_{i}
// and past_value_self_{i}, past_key_values.{i}.decoder.key, …), each
// [batch, kv_heads, past, head_dim], or stacked past_{i}, [2, batch,
// kv_heads, past, head_dim]. Layers need not be contiguous: a hybrid
// decoder's caches may sit on some layers only, and the table's layers are
// those, in order; recurrent and convolution states (past_conv.{i}) and
// cross-attention caches are left alone. One cache tensor for every layer
// is refused. The attention mask (attention_mask, input_mask, …) must have
// rank 2. The token ids, mask and positions may be int32 or int64.
//
// A causal mask that the model builds from the new tokens alone and
// broadcasts to the past's length (the onnxruntime-genai model builder's,
// which holds only for an empty past or one new token) is widened to
// cover the past (PrefixSite.WidenedMasks), so that prompts of any length
// run after the prefix.
func InjectPrefix(m *graph.Model, cfg adapter.PrefixConfig, opts ...PrefixOption) (*PrefixSite, Summary, error) {
	return injectPrefix(m, cfg, nil, opts)
}

// ApplyPrefix injects a saved prefix adapter into base (from_pretrained for
// prefix tuning): as InjectPrefix with ad's config, the parameters holding
// ad's Prompt and Projection. A table whose shape does not fit the model
// is an error naming the expected shape; nothing changes then.
func ApplyPrefix(base *graph.Model, ad *adapter.Adapter, opts ...PrefixOption) (*PrefixSite, Summary, error) {
	if ad == nil || ad.Prefix == nil {
		return nil, Summary{}, errorf("not a prefix adapter")
	}
	if err := ad.Validate(); err != nil {
		return nil, Summary{}, errorf("%w", err)
	}
	if len(ad.Extra) != 0 {
		return nil, Summary{}, errorf("prefix adapter holds %d extra tensors (%s); prefix tuning trains none", len(ad.Extra), strings.Join(slices.Sorted(maps.Keys(ad.Extra)), ", "))
	}
	return injectPrefix(base, *ad.Prefix, ad, opts)
}

// injectPrefix is InjectPrefix, with the parameters' values from ad when
// it is not nil.
func injectPrefix(m *graph.Model, cfg adapter.PrefixConfig, ad *adapter.Adapter, opts []PrefixOption) (*PrefixSite, Summary, error) {
	o, err := applyOptions(opts, prefixOptions)
	if err != nil {
		return nil, Summary{}, err
	}
	if _, ok, err := readPrefixRecord(m); err != nil {
		return nil, Summary{}, err
	} else if ok {
		return nil, Summary{}, errorf("%s already carries a prefix (%q metadata)", modelLabel(m), PrefixMetadataKey)
	}
	if _, ok, err := readRecord(m); err != nil {
		return nil, Summary{}, err
	} else if ok {
		return nil, Summary{}, errorf("%s carries LoRA branches (%q metadata); a model takes one PEFT type: add the prefix to the base model, or merge the LoRA first", modelLabel(m), MetadataKey)
	}
	plan, err := planPrefix(m, cfg, o)
	if err != nil {
		return nil, Summary{}, err
	}
	params, err := prefixParams(plan, ad, o.seed)
	if err != nil {
		return nil, Summary{}, err
	}
	site, err := buildPrefix(m, plan, params)
	if err != nil {
		return nil, Summary{}, err
	}
	if err := writePrefixRecord(m, site); err != nil {
		return nil, Summary{}, err
	}
	sum := summarizePrefix(m, site)
	return site, sum, nil
}
