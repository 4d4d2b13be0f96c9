package feed

import (
	"fmt"
	"strings"

	"github.com/peftonnx/peftonnx/dtype"
)

// Checker checks values against the inputs they feed, and that every
// value gives a named dimension (batch_size, sequence_length) the same
// size. The zero value is ready; use one Checker per run.
type Checker struct {
	dims map[string]dimSeen
}

type dimSeen struct {
	size  int64
	input string
}

// Check reports whether a value of element type dt and shape fits in: the
// element type the model declares, its rank, its fixed sizes, and the size
// that other inputs gave each named dimension. The error, a
// *MismatchError, names the input with its declared type and shape, and
// what was given.
func (c *Checker) Check(in Input, dt dtype.Type, shape []int64) error {
	bad := func(format string, args ...any) error {
		return &MismatchError{Input: in, DType: dt, Shape: append([]int64(nil), shape...), Reason: fmt.Sprintf(format, args...)}
	}
	switch {
	case in.DType == dtype.Undefined:
		return bad("the model's input is not a tensor")
	case dt != in.DType:
		return bad("element type %s, want %s", dt, in.DType)
	case in.Shape == nil:
		return nil
	case len(shape) != len(in.Shape):
		return bad("rank %d, want %d", len(shape), len(in.Shape))
	}
	for i, d := range in.Shape {
		if d >= 0 {
			if shape[i] != d {
				return bad("dimension %d is %d, want %d", i, shape[i], d)
			}
			continue
		}
		p := in.dimParam(i)
		if p == "" {
			continue
		}
		if c.dims == nil {
			c.dims = map[string]dimSeen{}
		}
		if seen, ok := c.dims[p]; ok && seen.size != shape[i] {
			return bad("dimension %d (%s) is %d, but input %s has %s = %d", i, p, shape[i], seen.input, p, seen.size)
		} else if !ok {
			c.dims[p] = dimSeen{shape[i], in.Name}
		}
	}
	return nil
}

// shapeText formats a shape as [8 12].
func shapeText(shape []int64) string {
	s := make([]string, len(shape))
	for i, d := range shape {
		s[i] = fmt.Sprint(d)
	}
	return "[" + strings.Join(s, " ") + "]"
}

// MismatchError is Check's error: the value given does not fit the input.
type MismatchError struct {
	Input Input
	// DType and Shape are what was given; Reason says what does not fit.
	DType  dtype.Type
	Shape  []int64
	Reason string
}

func (e *MismatchError) Error() string {
	return "feed: " + e.Detail()
}

// Detail is the message without the package prefix, for callers that
// write their own: "input NAME TYPE[DIMS]: given TYPE [SIZES]: REASON".
func (e *MismatchError) Detail() string {
	return fmt.Sprintf("input %s: given %s %s: %s", e.Input, e.DType, shapeText(e.Shape), e.Reason)
}
