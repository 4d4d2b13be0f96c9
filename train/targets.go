package train

import (
	"github.com/peftonnx/peftonnx/graph"
)

// checkClasses reports the first example without a class label, or with
// one that is not below classes (when classes > 0).
func (d *Dataset) checkClasses(classes int) error {
	for _, ex := range d.Examples {
		switch {
		case !ex.HasLabel:
			return errorf(`%s:%d: no "label": a classification example needs its class`, d.Path, ex.Line)
		case classes > 0 && ex.Label >= int64(classes):
			return errorf("%s:%d: label %d is outside the model's %d classes", d.Path, ex.Line, ex.Label, classes)
		}
	}
	return nil
}

// checkTargets reports the first example without a regression target, or
// whose target's length is not per (the output's values per example, when
// known: > 0) or differs from the first example's.
func (d *Dataset) checkTargets(output string, per int) error {
	for _, ex := range d.Examples {
		switch {
		case len(ex.Target) == 0:
			return errorf(`%s:%d: no "target": a regression (MSE) example needs the values it wants from the output %q`, d.Path, ex.Line, output)
		case per > 0 && len(ex.Target) != per:
			return errorf("%s:%d: target has %d values, the output %q has %d per example", d.Path, ex.Line, len(ex.Target), output, per)
		case len(ex.Target) != len(d.Examples[0].Target):
			return errorf("%s:%d: target has %d values, line %d's has %d: every target must have the same length", d.Path, ex.Line, len(ex.Target), d.Examples[0].Line, len(d.Examples[0].Target))
		}
	}
	return nil
}

// outputDims returns the declared dims of a value (-1 where dynamic), or
// nil when it has no declared shape.
func outputDims(m *graph.Model, name string) []int64 {
	vi, _ := findValue(m, name)
	if vi == nil {
		return nil
	}
	_, dims, ok := graph.ValueShape(vi)
	if !ok {
		return nil
	}
	return dims
}

// targetShape returns the shape of the regression labels for a batch of
// size batch whose examples each have n target values: dims (the scored
// output's, batch first) with the batch filled in and one dynamic
// dimension solved for. It fails when n does not fit dims.
func targetShape(dims []int64, batch, n int) ([]int64, error) {
	if len(dims) == 0 {
		return nil, errorf("regression targets: the output has no batch dimension")
	}
	shape := append([]int64{int64(batch)}, dims[1:]...)
	known, free := int64(1), -1
	for i, d := range shape[1:] {
		if d >= 0 {
			known *= d
			continue
		}
		if free >= 0 {
			// Several dynamic dims: all but the last are 1.
			shape[1+free] = 1
		}
		free = i
	}
	switch {
	case free >= 0 && known > 0 && int64(n)%known == 0:
		shape[1+free] = int64(n) / known
	case free < 0 && known == int64(n):
	default:
		return nil, errorf("regression targets: %d values per example do not fit the output's shape %v", n, dims)
	}
	return shape, nil
}
