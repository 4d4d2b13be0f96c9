package rewrite

import (
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/quant"
)

// An int4 embedding (com.microsoft GatherBlockQuantized, as peftonnx
// quantize --embeddings and the model builder write it) is frozen and
// packed: LoRA and DoRA do not adapt it (merge, DoRA's norms and the
// weight-based inits would need its float table). A target that names one
// is refused rather than matching nothing.

// refuseQuantizedEmbeddings returns an error naming the first int4
// embedding of m whose module or node name one of patterns matches in
// full, or nil.
func refuseQuantizedEmbeddings(m *graph.Model, patterns []string) error {
	res, _, err := compileTargets(patterns)
	if err != nil {
		return err
	}
	i := 0
	for _, n := range m.Graph().Node {
		if !quant.IsGatherNode(n) || len(n.Input) < 2 {
			continue
		}
		l := Linear{Node: n, NodeName: n.Name, Op: n.OpType, Kind: KindEmbedding, Weight: n.Input[0]}
		nameLayer(&l, i)
		i++
		if matchAny(res, l) >= 0 {
			return errorf("target %s is an int4 embedding (%s:%s node %q), which LoRA and DoRA do not adapt: quantize the base without --embeddings to adapt it", l.Module, quant.Domain, quant.GatherOpType, n.Name)
		}
	}
	return nil
}
