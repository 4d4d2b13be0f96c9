package train

import (
	"runtime/debug"
	"slices"

	"github.com/peftonnx/peftonnx/graph"
	rt "github.com/peftonnx/peftonnx/runtime"
	"github.com/peftonnx/peftonnx/session"
)

// NewSession opens an ONNX Runtime session over a training graph, such as
// the one autodiff.Build returns, set up as the Trainer sets up its own,
// through session.OpenModel:
//
//   - Weights that m maps from external data files stay there: the
//     serialized graph refers to them and ONNX Runtime reads them from
//     m.Dir itself, so no inline copy of the frozen weights is made on
//     either side. Other tensors are serialized inline.
//   - A graph whose inline part would pass the 2 GiB protobuf limit (a
//     float16 model upcast to float32 for training, say) is saved with all
//     its large tensors in a temporary folder (os.TempDir, or $TMPDIR) and
//     opened from there; the folder is removed once ONNX Runtime has read
//     it.
//   - Memory patterns are off. ONNX Runtime's memory patterns plan one
//     block for all of a run's intermediates; for a training graph, whose
//     forward values live on into the backward, that block is far larger
//     than what is live at any time. Off, the peak of a GPT-2-small-sized
//     LoRA step falls from 5.4 to 3.4 GB at no cost in time.
//   - Where the graph's fed floating-point inputs (the parameters that
//     train, for a step) weigh less than an eighth of its initializers
//     (the frozen weights), as in LoRA, prefix tuning and QLoRA, the
//     session allocates from the process's shared CPU arena
//     (runtime.WithSharedArena, peftArena), which grows by what is asked
//     for rather than by doubling regions: at 8×512 the GPT-2-small-sized
//     LoRA step's second step no longer adds 730 MiB to the first's peak
//     (4386 → 3750 MiB; at 8×128 1885 → 1859 MiB). For full fine-tuning,
//     whose parameters and gradients are fed and returned each step, it
//     raised the same model's peak from 5060 to 6028 MiB, so there the
//     session keeps an arena of its own.
//
// The caller's options come after these, so they can override them. Once
// the session is open, the serialized bytes and the garbage that building
// the graph left are handed back to the operating system, so that they do
// not add to the memory that training needs.
func NewSession(m *graph.Model, opts ...rt.Option) (*session.Session, error) {
	opts = append([]rt.Option{rt.WithMemoryPattern(false), rt.WithSharedArena(peftArena(m))}, opts...)
	sopts := []session.Option{session.WithName("the training graph"), session.WithRuntime(opts...)}
	if spillAbove > 0 {
		sopts = append(sopts, session.WithSpillAbove(spillAbove))
	}
	s, err := session.OpenModel(m, sopts...)
	if err != nil {
		return nil, errorf("%w", err)
	}
	debug.FreeOSMemory()
	return s, nil
}

// spillAbove, when positive, replaces the serialized size above which
// NewSession saves the graph with external data instead of handing it
// over in memory (session.WithSpillAbove). A variable for tests.
var spillAbove int64

// peftArena reports whether m's fed floating-point inputs of static shape
// (the parameters a step trains) weigh less than an eighth of its
// initializers (its frozen weights): a parameter-efficient step, whose
// memory is activations, which the shared arena suits (see NewSession).
func peftArena(m *graph.Model) bool {
	var fed, frozen int64
	for _, in := range m.Graph().Input {
		if m.Initializer(in.Name) != nil {
			continue
		}
		dt, dims, ok := graph.ValueShape(in)
		if !ok || !dt.IsFloat() || slices.Contains(dims, -1) {
			continue
		}
		fed += graph.NumElements(dims) * int64(dt.Size())
	}
	for _, t := range m.Graph().Initializer {
		frozen += graph.NumElements(t.Dims) * int64(max(graph.TypeOf(t).Size(), 1))
	}
	return fed*8 < frozen
}
