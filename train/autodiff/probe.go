package autodiff

import (
	"slices"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

// Probed is what a probe run found out about one value: its element type
// and its dims in that run.
type Probed struct {
	Elem dtype.Type
	Dims []int64
}

// ShapeProbe runs model m once, forward (with the first batch's inputs, as
// the caller sees fit), and returns what each of values, outputs of m,
// turned out to be. A value it cannot report is left out of the result.
type ShapeProbe func(m *graph.Model, values []string) (map[string]Probed, error)

// WithShapeProbe gives Build a way to find out the shapes that neither
// inference nor the model's declarations (value_info, graph outputs)
// describe: the outputs of ops that autodiff does not know, and whatever
// follows from them. When some are undescribed, Build calls probe once,
// on the input model, for those values, and takes their element types and
// ranks from the run (their dims stay symbolic: a probe sees one batch's
// sizes), so that the layers after an unknown op still get their
// gradients. Without a probe such values stay unknown, and a rule that
// needs their rank fails with an error that says so.
func WithShapeProbe(probe ShapeProbe) Option {
	return func(c *config) error {
		c.probe = probe
		return nil
	}
}

// probeUndescribed runs the probe for the values inference left
// undescribed and returns what it reported as value infos with the
// element type and rank only, or nil when there is nothing to ask or no
// probe.
func (b *gradientPass) probeUndescribed(undescribed []string) ([]*onnxpb.ValueInfoProto, error) {
	if b.cfg.probe == nil || len(undescribed) == 0 {
		return nil, nil
	}
	// The probe model: the input model with the values as outputs, each
	// declared with the element type of its node's first input that
	// inference knows (an unknown op of floats makes floats).
	pm := b.input.Clone()
	for _, v := range undescribed {
		elem := dtype.Float32
		if n := b.m.Producer(v); n != nil {
			for _, in := range n.Input {
				if dt := b.inf.get(in).elem; in != "" && dt != dtype.Undefined {
					elem = dt
					break
				}
			}
		}
		vi := graph.TensorInfo(v, elem, nil)
		vi.Type.GetTensorType().Shape = nil
		pm.AddOutput(vi)
	}
	got, err := b.cfg.probe(pm, slices.Clone(undescribed))
	if err != nil {
		return nil, errorf("probe run for the shapes of %d values that inference does not describe (%s, …): %w", len(undescribed), undescribed[0], err)
	}
	var out []*onnxpb.ValueInfoProto
	for _, v := range undescribed {
		p, ok := got[v]
		if !ok || p.Elem == dtype.Undefined {
			continue
		}
		// Rank and type only: each dim is left unnamed.
		vi := graph.TensorInfo(v, p.Elem, nil)
		shape := &onnxpb.TensorShapeProto{}
		for range p.Dims {
			shape.Dim = append(shape.Dim, &onnxpb.TensorShapeProto_Dimension{})
		}
		vi.Type.GetTensorType().Shape = shape
		out = append(out, vi)
	}
	return out, nil
}
