package train

import (
	"github.com/peftonnx/peftonnx/graph"
	rt "github.com/peftonnx/peftonnx/runtime"
	"github.com/peftonnx/peftonnx/train/autodiff"
)

// batchProbe returns an autodiff.ShapeProbe that runs a model once,
// forward, on batch b, fed as the trainer feeds a batch, and reports the
// types and shapes of the outputs asked for: how the gradient graph
// learns the ranks of what follows an op that autodiff does not know.
// targetDims are the scored output's dims (for regression labels), opts
// the session's options.
func batchProbe(b Batch, task Task, targetDims []int64, opts []rt.Option) autodiff.ShapeProbe {
	return func(m *graph.Model, values []string) (map[string]autodiff.Probed, error) {
		ses, err := NewSession(m, opts...)
		if err != nil {
			return nil, err
		}
		r, err := newRunner(ses, nil, values, task, targetDims)
		if err != nil {
			ses.Close()
			return nil, err
		}
		defer r.close()
		res, err := r.run(nil, b, false)
		if err != nil {
			return nil, err
		}
		out := map[string]autodiff.Probed{}
		for _, v := range values {
			if x := res[v]; x != nil {
				out[v] = autodiff.Probed{Elem: x.DType(), Dims: x.Shape()}
			}
		}
		return out, nil
	}
}
