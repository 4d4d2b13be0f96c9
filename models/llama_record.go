package models

import (
	"encoding/json"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

// LlamaConfigKey is the model metadata_props key under which Llama records
// the config it built the model from (its defaults filled in), so that a
// tool that reads the model from a file knows the sizes that the weights'
// shapes do not tell (the heads and KV heads, the norm's epsilon, RoPE's
// theta): LlamaConfigOf reads it back, and LlamaTensorParallel shards by
// it. ONNX Runtime ignores it, and rewrite keeps it through inject, apply
// and merge.
const LlamaConfigKey = "peftonnx.llama_config"

// llamaRecord is what LlamaConfigKey holds, in HuggingFace's config.json
// names where it has them.
type llamaRecord struct {
	Version         int        `json:"version"`
	VocabSize       int        `json:"vocab_size"`
	Hidden          int        `json:"hidden_size"`
	Layers          int        `json:"num_hidden_layers"`
	Heads           int        `json:"num_attention_heads"`
	KVHeads         int        `json:"num_key_value_heads"`
	Intermediate    int        `json:"intermediate_size"`
	RMSNormEps      float64    `json:"rms_norm_eps"`
	RopeTheta       float64    `json:"rope_theta"`
	RopeInterleaved bool       `json:"rope_interleaved"`
	MaxPositions    int        `json:"max_position_embeddings"`
	UseCache        bool       `json:"use_cache"`
	DType           dtype.Type `json:"dtype"`
	Producer        string     `json:"producer"`
	Seed            uint64     `json:"seed"`
	InitStd         float64    `json:"initializer_range"`
	PackedQKV       bool       `json:"packed_qkv,omitempty"`
	RotaryNodes     bool       `json:"rotary_nodes,omitempty"`
	Unfused         bool       `json:"unfused,omitempty"`
}

// llamaRecordVersion is the layout of llamaRecord that this package writes.
const llamaRecordVersion = 1

// recordLlamaConfig stores c (with its defaults) in m's metadata under
// LlamaConfigKey, replacing an earlier record.
func recordLlamaConfig(m *graph.Model, c LlamaConfig) error {
	c = c.withDefaults()
	b, err := json.Marshal(llamaRecord{
		Version: llamaRecordVersion, VocabSize: c.VocabSize, Hidden: c.Hidden, Layers: c.Layers, Heads: c.Heads,
		KVHeads: c.KVHeads, Intermediate: c.Intermediate, RMSNormEps: c.RMSNormEps, RopeTheta: c.RopeTheta,
		RopeInterleaved: c.RopeInterleaved, MaxPositions: c.MaxPositions, UseCache: !c.NoCache, DType: c.DType,
		Producer: c.Producer.String(), Seed: c.Seed, InitStd: c.InitStd,
		PackedQKV: c.Builder.PackedQKV, RotaryNodes: c.Builder.RotaryNodes, Unfused: c.Builder.Unfused,
	})
	if err != nil {
		return errorf("llama: record the config: %w", err)
	}
	props := m.Proto.MetadataProps[:0]
	for _, p := range m.Proto.MetadataProps {
		if p.Key != LlamaConfigKey {
			props = append(props, p)
		}
	}
	m.Proto.MetadataProps = append(props, &onnxpb.StringStringEntryProto{Key: LlamaConfigKey, Value: string(b)})
	return nil
}

// LlamaConfigOf returns the config that Llama recorded in m
// (LlamaConfigKey), checked as Validate checks it. A model that Llama did
// not build (another family, an export of another tool) has no record,
// and that is an error that says so.
func LlamaConfigOf(m *graph.Model) (LlamaConfig, error) {
	var rec *llamaRecord
	for _, p := range m.Proto.MetadataProps {
		if p.Key != LlamaConfigKey {
			continue
		}
		rec = &llamaRecord{}
		if err := json.Unmarshal([]byte(p.Value), rec); err != nil {
			return LlamaConfig{}, errorf("llama config: metadata %q: %w", LlamaConfigKey, err)
		}
	}
	switch {
	case rec == nil:
		return LlamaConfig{}, errorf("llama config: the model records no LLaMA config (no %q metadata, which models.Llama writes)", LlamaConfigKey)
	case rec.Version != llamaRecordVersion:
		return LlamaConfig{}, errorf("llama config: metadata %q has version %d; this build reads version %d", LlamaConfigKey, rec.Version, llamaRecordVersion)
	}
	c := LlamaConfig{
		Core:    Core{VocabSize: rec.VocabSize, Hidden: rec.Hidden, Layers: rec.Layers, Heads: rec.Heads, Seed: rec.Seed, InitStd: rec.InitStd},
		KVHeads: rec.KVHeads, Intermediate: rec.Intermediate, RMSNormEps: rec.RMSNormEps, RopeTheta: rec.RopeTheta,
		RopeInterleaved: rec.RopeInterleaved, MaxPositions: rec.MaxPositions, NoCache: !rec.UseCache, DType: rec.DType,
		Builder: ModelBuilderOptions{PackedQKV: rec.PackedQKV, RotaryNodes: rec.RotaryNodes, Unfused: rec.Unfused},
	}
	switch rec.Producer {
	case Optimum.String():
		c.Producer = Optimum
	case ModelBuilder.String():
		c.Producer = ModelBuilder
	default:
		return LlamaConfig{}, errorf("llama config: metadata %q: producer %q does not build LLaMA (optimum or model-builder)", LlamaConfigKey, rec.Producer)
	}
	if err := c.Validate(); err != nil {
		return LlamaConfig{}, errorf("llama config: metadata %q: %w", LlamaConfigKey, err)
	}
	return c, nil
}
