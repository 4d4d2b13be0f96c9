package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/peftonnx/peftonnx/adapter"
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

// loadLoRAAdapter reads the LoRA adapter at path, a HuggingFace PEFT
// directory or an .onnx_adapter file.
func loadLoRAAdapter(path string) (*adapter.Adapter, error) {
	ad, err := adapter.Load(path)
	if err != nil {
		return nil, err
	}
	if ad.LoRA == nil {
		return nil, fmt.Errorf("adapter %s is not a LoRA adapter (it holds %s); prefix adapters are injected with peftonnx prefix", path, ad.Config().PEFTType())
	}
	if len(ad.Weights) == 0 {
		return nil, fmt.Errorf("adapter %s holds a LoRA config but no weights (no adapter_model.safetensors)", path)
	}
	return ad, nil
}

// adaptedSession is an ONNX Runtime session over a model with an adapter
// applied in memory.
type adaptedSession struct {
	*ortrt.Session
	// Feeds are graph inputs to add to every run: the adapter's factors
	// where the model takes them as inputs (inject --as-inputs), else nil.
	Feeds map[string]*ortrt.Tensor
	// tmpDir holds the adapted model when it was too large to pass to ONNX
	// Runtime in memory.
	tmpDir string
}

// Close releases the session and removes any temporary files.
func (s *adaptedSession) Close() error {
	err := s.Session.Close()
	if s.tmpDir != "" {
		os.RemoveAll(s.tmpDir)
	}
	return err
}

// marshalModel serializes a model for NewSessionFromBytes. Tests replace
// it to take the path for models over 2 GiB.
var marshalModel = (*graph.Model).Marshal

// openAdapted opens a session on the model at modelPath with the LoRA
// adapter at adapterPath, or without one when adapterPath is "". The model
// is loaded first, so that its errors name the model file. A model whose
// LoRA factors are graph inputs gets the adapter through Feeds, on a
// session over the file itself; any other model is adapted in memory
// (rewrite.Apply) and handed to ONNX Runtime from memory, or, over 2 GiB,
// through a temporary copy with external data. The files are not changed.
func openAdapted(modelPath, adapterPath string, opts ...ortrt.Option) (*adaptedSession, error) {
	m, err := graph.Load(modelPath)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	if adapterPath == "" {
		m.Close()
		sess, err := ortrt.NewSession(modelPath, opts...)
		if err != nil {
			return nil, err
		}
		return &adaptedSession{Session: sess}, nil
	}
	ad, err := loadLoRAAdapter(adapterPath)
	if err != nil {
		return nil, err
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
	switch t.DType {
	case adapter.Float32:
		return ortrt.NewFloat32(t.Shape, t.Data)
	case adapter.Float16:
		return ortrt.NewFloat16FromFloat32(t.Shape, t.Data)
	case adapter.BFloat16:
		bits := make([]uint16, len(t.Data))
		for i, v := range t.Data {
			bits[i] = half.Float32ToBFloat16(v)
		}
		return ortrt.NewBFloat16(t.Shape, bits)
	case adapter.Float64:
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
