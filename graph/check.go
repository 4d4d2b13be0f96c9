package graph

import (
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

// checkTensors verifies, without reading external data, that every
// initializer of the main graph holds as many bytes as its element type
// and dims say, and that no name is given to two initializers. Commands
// size new tensors from the dims of the ones they find, so a tensor whose
// dims claim more than its data holds must be refused here, before any of
// them allocates for it. Types without a fixed size (strings, 4-bit types)
// are not checked; external tensors are checked by checkExternal.
func (m *Model) checkTensors() error {
	seen := make(map[string]bool, len(m.Proto.Graph.Initializer))
	for _, t := range m.Proto.Graph.Initializer {
		if seen[t.Name] {
			return formatErrorf("", "two initializers are named %q", t.Name)
		}
		seen[t.Name] = true
		if t.DataLocation == onnxpb.TensorProto_EXTERNAL || TypeOf(t).Size() == 0 {
			continue
		}
		want, err := byteSize(t)
		if err != nil {
			return err
		}
		have := int64(len(t.RawData))
		if have == 0 {
			have = int64(typedFieldCount(t)) * int64(TypeOf(t).Size())
		}
		if have != want {
			return formatErrorf(t.Name, "%s %v needs %d bytes of data, the model holds %d", TypeOf(t), t.Dims, want, have)
		}
	}
	return nil
}

// typedFieldCount returns the number of values that t holds in the typed
// repeated field of its element type (float_data, int64_data, …).
func typedFieldCount(t *onnxpb.TensorProto) int {
	switch {
	case len(t.FloatData) > 0:
		return len(t.FloatData)
	case len(t.DoubleData) > 0:
		return len(t.DoubleData)
	case len(t.Int64Data) > 0:
		return len(t.Int64Data)
	case len(t.Uint64Data) > 0:
		return len(t.Uint64Data)
	}
	return len(t.Int32Data)
}
