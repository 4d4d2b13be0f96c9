package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/internal/half"
	"github.com/peftonnx/peftonnx/rewrite"
	ortrt "github.com/peftonnx/peftonnx/runtime"
)

// addAdapterFlag declares --adapter on fs; usage says what the adapter is
// for.
func addAdapterFlag(fs *flag.FlagSet, usage string) *string {
	return fs.String("adapter", "", usage+": a HuggingFace PEFT `DIR` or an .onnx_adapter FILE")
}

// loadAdapter reads the adapter at path, a HuggingFace PEFT directory or
// an .onnx_adapter file: LoRA or prefix tuning. An adapter with a config
// but no weights (a PaddleNLP directory without adapter_model.safetensors)
// is an error.
func loadAdapter(path string) (*adapter.Adapter, error) {
	ad, err := adapter.Load(path)
	if err != nil {
		return nil, err
	}
	switch {
	case ad.LoRA != nil && len(ad.Weights) == 0:
		return nil, fmt.Errorf("adapter %s holds a LoRA config but no weights (no %s)", path, adapter.HFWeightsFile)
	case ad.Prefix != nil && ad.Prompt == nil:
		return nil, fmt.Errorf("adapter %s holds a prefix config but no weights (no %s)", path, adapter.HFWeightsFile)
	}
	return ad, nil
}

// adapterKind names the PEFT type of ad in messages: "a LoRA adapter" or
// "a prefix adapter (PREFIX_TUNING)".
func adapterKind(ad *adapter.Adapter) string {
	if ad.Prefix != nil {
		return "a prefix adapter (" + ad.Prefix.PEFTType() + ")"
	}
	return "a LoRA adapter"
}

// prefixOf returns the prefix that m records (rewrite.InjectPrefix,
// rewrite.ApplyPrefix), or nil when it carries none. Metadata that names a
// prefix but cannot be read is an error.
func prefixOf(m *graph.Model) (*rewrite.PrefixSite, error) {
	for _, p := range m.Proto.MetadataProps {
		if p.Key == rewrite.PrefixMetadataKey {
			return rewrite.PrefixSiteOf(m)
		}
	}
	return nil, nil
}

// carriesPrefix reports whether m records a prefix; see prefixOf.
func carriesPrefix(m *graph.Model) (bool, error) {
	site, err := prefixOf(m)
	return site != nil, err
}

// carriesLoRA reports whether m records LoRA branches, as inputs or not.
func carriesLoRA(m *graph.Model) bool {
	_, err := rewrite.Sites(m)
	return err == nil
}

// checkAdapterFits checks that the adapter ad at adapterPath may be added
// to the model at modelPath, m, as far as the PEFT types go: a model
// carries LoRA or a prefix, not both, as a HuggingFace PeftModel does, and
// one prefix at most. (Whether the shapes fit is for rewrite to say.)
func checkAdapterFits(modelPath, adapterPath string, m *graph.Model, ad *adapter.Adapter) error {
	prefixed, err := carriesPrefix(m)
	if err != nil {
		return err
	}
	switch {
	case ad.Prefix != nil && prefixed:
		return fmt.Errorf("%s already carries a prefix, so --adapter %s, %s, cannot be added: give its base model", modelPath, adapterPath, adapterKind(ad))
	case ad.Prefix != nil && carriesLoRA(m):
		return fmt.Errorf("%s carries LoRA branches, so --adapter %s, %s, cannot be added: a model carries LoRA or a prefix, not both; give the base model", modelPath, adapterPath, adapterKind(ad))
	case ad.LoRA != nil && prefixed:
		return fmt.Errorf("%s carries a prefix (prefix tuning), so --adapter %s, %s, cannot be added: a model carries LoRA or a prefix, not both; give the base model", modelPath, adapterPath, adapterKind(ad))
	}
	return nil
}

// adaptedSession is an ONNX Runtime session over a model with an adapter
// applied in memory.
type adaptedSession struct {
	*ortrt.Session
	// Feeds are graph inputs to add to every run: the adapter's factors
	// where the model takes them as inputs (inject --as-inputs), else nil.
	Feeds map[string]*ortrt.Tensor
	// Prefix is the prefix that the model carries, from its file or from
	// a prefix adapter, else nil. A prefix is a past that every run has,
	// so a model that takes several tokens only with an empty past (the
	// attention mask of onnxruntime-genai exports) then takes one token
	// per run: a caller must feed such a model its prompt token by token.
	Prefix *rewrite.PrefixSite
	// tmpDir holds the adapted model when it was too large to pass to ONNX
	// Runtime in memory.
	tmpDir string
}

// Close releases the session and removes any temporary files. A nil
// session is safe to close.
func (s *adaptedSession) Close() error {
	if s == nil {
		return nil
	}
	err := s.Session.Close()
	if s.tmpDir != "" {
		os.RemoveAll(s.tmpDir)
	}
	return err
}

// marshalModel serializes a model for NewSessionFromBytes. Tests replace
// it to take the path for models over 2 GiB.
var marshalModel = (*graph.Model).Marshal

// openAdapted opens a session on the model at modelPath with the adapter
// at adapterPath, or without one when adapterPath is "". The model is
// loaded first, so that its errors name the model file.
//
// A LoRA adapter on a model whose LoRA factors are graph inputs comes
// through Feeds, on a session over the file itself. Any other LoRA adapter
// is applied in memory (rewrite.Apply), and so is a prefix adapter
// (rewrite.ApplyPrefix): the prefix goes in front of the model's past
// inputs, which keep their meaning, so that run and generate feed the
// model as they feed its base. An adapted model is handed to ONNX Runtime
// from memory, or, over 2 GiB, through a temporary copy with external
// data. The files are not changed.
func openAdapted(modelPath, adapterPath string, opts ...ortrt.Option) (*adaptedSession, error) {
	m, err := graph.Load(modelPath)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	if adapterPath == "" {
		site, err := prefixOf(m)
		if err != nil {
			return nil, err
		}
		m.Close()
		sess, err := ortrt.NewSession(modelPath, opts...)
		if err != nil {
			return nil, err
		}
		return &adaptedSession{Session: sess, Prefix: site}, nil
	}
	ad, err := loadAdapter(adapterPath)
	if err != nil {
		return nil, err
	}
	if err := checkAdapterFits(modelPath, adapterPath, m, ad); err != nil {
		return nil, err
	}
	if ad.Prefix != nil {
		site, _, err := rewrite.ApplyPrefix(m, ad)
		if err != nil {
			return nil, fmt.Errorf("applying %s to %s: %w", adapterPath, modelPath, err)
		}
		sess, err := sessionInMemory(m, opts)
		if err != nil {
			return nil, err
		}
		sess.Prefix = site
		return sess, nil
	}
	if sites, err := rewrite.Sites(m); err == nil {
		if !sites[0].AsInputs {
			return nil, fmt.Errorf("%s already carries LoRA branches, so --adapter %s cannot be added: give the base model, or the model from inject --as-inputs", modelPath, adapterPath)
		}
		if len(ad.Extra) > 0 {
			return nil, fmt.Errorf("adapter %s also trains %d base tensors (%s), which %s cannot take as inputs: run its base model with --adapter instead", adapterPath, len(ad.Extra), describeExtra(ad), modelPath)
		}
		feeds, err := rewrite.Feeds(m, ad)
		if err != nil {
			return nil, fmt.Errorf("feeding %s: %w", adapterPath, err)
		}
		tensors := map[string]*ortrt.Tensor{}
		for name, t := range feeds {
			if tensors[name], err = runtimeTensor(t); err != nil {
				return nil, fmt.Errorf("feeding %s: input %q: %v", adapterPath, name, err)
			}
		}
		m.Close()
		sess, err := ortrt.NewSession(modelPath, opts...)
		if err != nil {
			return nil, err
		}
		return &adaptedSession{Session: sess, Feeds: tensors}, nil
	}
	if _, _, err := rewrite.Apply(m, ad); err != nil {
		return nil, fmt.Errorf("applying %s to %s: %w", adapterPath, modelPath, err)
	}
	return sessionInMemory(m, opts)
}

// sessionInMemory opens a session on m, a model changed in memory: from
// its serialized bytes, or, where it is too large for one protobuf message
// (2 GiB), from a temporary copy with external data that Close removes. It
// closes m as soon as the session no longer needs it.
func sessionInMemory(m *graph.Model, opts []ortrt.Option) (*adaptedSession, error) {
	b, err := marshalModel(m)
	if err == nil {
		m.Close()
		sess, err := ortrt.NewSessionFromBytes(b, opts...)
		if err != nil {
			return nil, err
		}
		return &adaptedSession{Session: sess}, nil
	}
	// Too large for one protobuf message: save a copy with external data.
	dir, err := os.MkdirTemp("", "peftonnx-adapted-")
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "model.onnx")
	if err := m.Save(path, graph.SaveOptions{ExternalData: true}); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	m.Close()
	sess, err := ortrt.NewSession(path, opts...)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return &adaptedSession{Session: sess, tmpDir: dir}, nil
}

// runtimeTensor converts an adapter tensor to a runtime tensor of the same
// element type.
func runtimeTensor(t *adapter.Tensor) (*ortrt.Tensor, error) {
	switch t.DType.Or(dtype.Float32) { // an adapter tensor of no dtype holds float32
	case dtype.Float32:
		return ortrt.NewFloat32(t.Shape, t.Data)
	case dtype.Float16:
		return ortrt.NewFloat16FromFloat32(t.Shape, t.Data)
	case dtype.BFloat16:
		bits := make([]uint16, len(t.Data))
		for i, v := range t.Data {
			bits[i] = half.Float32ToBFloat16(v)
		}
		return ortrt.NewBFloat16(t.Shape, bits)
	case dtype.Float64:
		v := make([]float64, len(t.Data))
		for i, x := range t.Data {
			v[i] = float64(x)
		}
		return ortrt.NewFloat64(t.Shape, v)
	}
	return nil, fmt.Errorf("element type %s cannot be fed", t.DType)
}

// describeExtra names the first of ad's Extra tensors: "h.0.attn.c_attn.bias, …".
func describeExtra(ad *adapter.Adapter) string {
	names := make([]string, 0, len(ad.Extra))
	for name := range ad.Extra {
		names = append(names, name)
	}
	slices.Sort(names)
	if len(names) > 2 {
		names = append(names[:2], "…")
	}
	return strings.Join(names, ", ")
}
