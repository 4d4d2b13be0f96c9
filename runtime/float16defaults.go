package runtime

import (
	"fmt"
	"strings"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/peftonnx/peftonnx/dtype"
)

// ONNX Runtime 1.24 crashes the process, with a SIGSEGV inside
// CreateSession, at ORT_ENABLE_ALL on any model where a float16 initializer
// that is also a graph input (a default, such as the rank-0 A and B of LoRA
// "adapters as inputs") feeds a Cast to float32, its own or one that the CPU
// provider inserts before an operator without a float16 kernel, such as
// MatMul. Its level-4 optimizer FuseFp16InitializerToFp32NodeTransformer
// takes that Cast for the Cast of a constant, because the initializer exists
// (Graph::IsInitializedTensor), then asks for the constant
// (graph_utils::GetConstantInitializer), which is null for an initializer
// that a run may override, and dereferences it. microsoft/onnxruntime#32143
// fixes it upstream by leaving such initializers alone. The size of the
// default does not matter; bfloat16 defaults and lower levels are not
// affected.
//
// A session reproduces that fix: where the defaults are small enough to feed
// (see loadDefaults), ONNX Runtime is given the model with the float16
// defaults hidden, so that it sees required inputs, and every run feeds them
// itself; the optimizer then still turns the float16 weights into float32
// ones once, at load. Where they are not, the session disables the
// optimizer, and the model's float16 weights are cast on every run.

const (
	// disableOptimizersKey lists ONNX Runtime optimizers to skip. ONNX
	// Runtime 1.24 splits the list at semicolons (its header says commas).
	disableOptimizersKey = "optimization.disable_specified_optimizers"
	// fuseFloat16Optimizer is the optimizer that crashes.
	fuseFloat16Optimizer = "FuseFp16InitializerToFp32NodeTransformer"
)

// The tag of a GraphProto initializer field, and the tag that hides one:
// field 3, which onnx.proto reserves in GraphProto, so that parsers skip it
// as an unknown field. Both take one byte, so hiding changes no length.
var (
	initializerTag = byte(protowire.EncodeTag(graphInitializer, protowire.BytesType))
	hiddenTag      = byte(protowire.EncodeTag(3, protowire.BytesType))
)

// float16Guard is how a session keeps ONNX Runtime clear of that crash.
type float16Guard struct {
	// hidden names the optional inputs whose defaults ONNX Runtime does not
	// see; for it they are required, and runs feed the defaults.
	hidden map[string]bool
	// tags are the offsets of the tags of the initializer fields to hide
	// in the model bytes that ONNX Runtime loads.
	tags []int64
	// entries are the session config entries to add, where the defaults
	// cannot be hidden.
	entries [][2]string
}

// guardFloat16Defaults plans the workaround for s, which prepare has filled
// in, at the options of cfg. It does nothing for a model without float16
// defaults or below OptimizeAll.
func (s *Session) guardFloat16Defaults(info *modelInfo, cfg *config) {
	if cfg.optLevel < OptimizeAll {
		return
	}
	var names []string
	for _, v := range s.inputs {
		if v.Optional && v.DType == dtype.Float16 {
			names = append(names, v.Name)
		}
	}
	if names == nil {
		return
	}
	hideable := s.defaults != nil
	var tags []int64
	for _, name := range names {
		ts := info.defaultTags[name]
		if len(ts) == 0 {
			hideable = false
		}
		for _, t := range ts {
			if t.n != 1 {
				hideable = false
			}
			tags = append(tags, t.off)
		}
	}
	if !hideable {
		s.guard.entries = [][2]string{disableOptimizer(cfg.entries, fuseFloat16Optimizer)}
		return
	}
	s.guard.hidden = make(map[string]bool, len(names))
	for _, name := range names {
		s.guard.hidden[name] = true
	}
	s.guard.tags = tags
}

// disableOptimizer returns the session config entry that adds name to the
// optimizers that ONNX Runtime skips, keeping those that entries list.
func disableOptimizer(entries [][2]string, name string) [2]string {
	var list string
	for _, kv := range entries {
		if kv[0] == disableOptimizersKey {
			list = kv[1] // the last one counts, as in ONNX Runtime
		}
	}
	for _, n := range strings.Split(list, ";") {
		if n == name {
			return [2]string{disableOptimizersKey, list}
		}
	}
	if list != "" {
		list += ";"
	}
	return [2]string{disableOptimizersKey, list + name}
}

// hideInitializers hides, in place, the initializer fields of the serialized
// model b whose tags are at the offsets tags.
func hideInitializers(b []byte, tags []int64) error {
	for _, off := range tags {
		if off < 0 || off >= int64(len(b)) || b[off] != initializerTag {
			return fmt.Errorf("no initializer at offset %d; did the model change while it was read?", off)
		}
		b[off] = hiddenTag
	}
	return nil
}

// withHidden returns inputs with the defaults of the hidden inputs that it
// lacks, which ONNX Runtime must be fed. It returns inputs itself when none
// is missing.
func (s *Session) withHidden(inputs map[string]*Tensor) map[string]*Tensor {
	var all map[string]*Tensor
	for name := range s.guard.hidden {
		if inputs[name] != nil {
			continue
		}
		if all == nil {
			all = make(map[string]*Tensor, len(inputs)+len(s.guard.hidden))
			for k, t := range inputs {
				all[k] = t
			}
		}
		all[name] = s.defaults[name]
	}
	if all == nil {
		return inputs
	}
	return all
}
