package train

import (
	"github.com/peftonnx/peftonnx/feed"
	"github.com/peftonnx/peftonnx/graph"
)

// checkPositions reports the first example of d that, cut to seqLen tokens
// (padded to it with pad), is longer than the rotary cache of m covers:
// ONNX Runtime would fail at the first step with "Updating cos_cache and
// sin_cache in RotaryEmbedding is not currently supported".
func checkPositions(m *graph.Model, d *Dataset, seqLen int, pad bool) error {
	lim, ok := feed.RotaryLimit(m.Proto.Graph)
	if !ok {
		return nil
	}
	for _, ex := range d.Examples {
		n := len(ex.InputIDs)
		if seqLen > 0 {
			n = min(n, seqLen)
			if pad {
				n = seqLen
			}
		}
		if int64(n) > lim.Positions {
			return errorf("%s:%d: a sequence of %d tokens is longer than the %d positions of %s's rotary cache (%s, read by node %q); set the sequence length (--seq-len) to %d or less",
				d.Path, ex.Line, n, lim.Positions, modelName(m), lim.Cache, lim.Node, lim.Positions)
		}
	}
	return nil
}

// modelName names m in messages: its file, or "the model".
func modelName(m *graph.Model) string {
	if m.Path != "" {
		return m.Path
	}
	return "the model"
}
