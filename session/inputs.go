package session

import (
	"os"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/rewrite"
	rt "github.com/peftonnx/peftonnx/runtime"
)

// InputParams reads the .onnx_adapter file at path and returns its
// parameters by name where each names a graph input of m, as ONNX
// Runtime's LoRA API feeds such a file to a model that another tool
// exported with its factors as inputs (rewrite.InputParams). ok is false
// where path is a directory, not an .onnx_adapter file, or a file of
// another kind for m (LoRA modules that Apply or Feeds place); the usual
// loading then reports what is wrong with it.
func InputParams(m *graph.Model, path string) (params map[string]*adapter.Tensor, ok bool, err error) {
	st, err := os.Stat(path)
	if err != nil || st.IsDir() {
		return nil, false, nil
	}
	f, err := adapter.ReadONNXAdapter(path)
	if err != nil {
		return nil, false, nil
	}
	params, ok, err = rewrite.InputParams(m, f)
	if err != nil {
		return nil, false, errorf("adapter %s: %w", path, err)
	}
	return params, ok, nil
}

// inputFeeds returns the runtime tensors of InputParams, or ok false.
func inputFeeds(m *graph.Model, path string) (map[string]*rt.Tensor, bool, error) {
	params, ok, err := InputParams(m, path)
	if !ok || err != nil {
		return nil, false, err
	}
	feeds := make(map[string]*rt.Tensor, len(params))
	for name, t := range params {
		if feeds[name], err = runtimeTensor(t); err != nil {
			return nil, false, errorf("adapter %s: parameter %q: %w", path, name, err)
		}
	}
	return feeds, true, nil
}
