package pickle

import (
	"fmt"
	"math"
	"math/bits"
	"strings"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/npy"
)

// global is a name that a GLOBAL or STACK_GLOBAL opcode pushed. The
// decoder never imports it: REDUCE looks the name up in knownGlobals and
// runs its own code for it.
type global struct {
	module, name string
	kind         globalKind
}

func (g *global) String() string { return g.module + "." + g.name }

type globalKind int

const (
	gOrderedDict  globalKind = iota + 1 // collections.OrderedDict()
	gReconstruct                        // numpy's ndarray.__reduce__: _reconstruct(ndarray, shape, typecode), then BUILD
	gNDArray                            // numpy.ndarray, the first argument of _reconstruct
	gDType                              // numpy.dtype(typestr, align, copy), then BUILD
	gFromBuffer                         // numpy's protocol 5 reduce: _frombuffer(buffer, dtype, shape, order)
	gCodecsEncode                       // _codecs.encode(str, "latin1"): how protocol 2 spells bytes
	gBytes                              // bytes(): how protocol 2 spells b""
)

// knownGlobals are the only globals a pickle may name, by module.name.
// numpy 2 moved numpy.core to numpy._core; both are taken.
var knownGlobals = map[string]globalKind{
	"collections.OrderedDict":             gOrderedDict,
	"numpy.core.multiarray._reconstruct":  gReconstruct,
	"numpy._core.multiarray._reconstruct": gReconstruct,
	"numpy.ndarray":                       gNDArray,
	"numpy.dtype":                         gDType,
	"numpy.core.numeric._frombuffer":      gFromBuffer,
	"numpy._core.numeric._frombuffer":     gFromBuffer,
	"_codecs.encode":                      gCodecsEncode,
	"__builtin__.bytes":                   gBytes,
	"builtins.bytes":                      gBytes,
}

func (d *decoder) global(module, name string) error {
	kind, ok := knownGlobals[module+"."+name]
	if !ok {
		return fmt.Errorf("the global %s.%s is outside the subset (numpy arrays, collections.OrderedDict, _codecs.encode); nothing is imported", clip(module), clip(name))
	}
	return d.push(&global{module: module, name: name, kind: kind})
}

// numpyDType is a numpy.dtype under construction: REDUCE gives its type, BUILD
// its byte order.
type numpyDType struct {
	dt    dtype.Type
	order byte // '<', '>' or '|' once built, else 0
}

// pendingArray is an ndarray that _reconstruct made and BUILD fills in.
type pendingArray struct {
	arr *npy.Array // nil until BUILD
}

// reduce applies the global g to args.
func reduce(g *global, args []any) (any, error) {
	want := map[globalKind]int{gOrderedDict: 0, gReconstruct: 3, gDType: 3, gFromBuffer: 4, gCodecsEncode: 2, gBytes: 0}
	n, callable := want[g.kind]
	if !callable {
		return nil, fmt.Errorf("%s cannot be called", g)
	}
	if len(args) != n {
		return nil, fmt.Errorf("%s takes %d arguments here, got %d", g, n, len(args))
	}
	switch g.kind {
	case gOrderedDict:
		return NewDict(), nil
	case gBytes:
		return []byte{}, nil
	case gCodecsEncode:
		s, ok1 := args[0].(string)
		enc, ok2 := args[1].(string)
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("%s takes two strings, got %s and %s", g, TypeName(args[0]), TypeName(args[1]))
		}
		switch strings.ToLower(enc) {
		case "latin1", "latin-1", "latin_1", "iso-8859-1", "iso8859-1":
		default:
			return nil, fmt.Errorf("%s with encoding %q: only latin1 is read", g, clip(enc))
		}
		out := make([]byte, 0, len(s))
		for _, r := range s {
			if r > 0xff {
				return nil, fmt.Errorf("%s: character %U is not latin1", g, r)
			}
			out = append(out, byte(r))
		}
		return out, nil
	case gReconstruct:
		if c, ok := args[0].(*global); !ok || c.kind != gNDArray {
			return nil, fmt.Errorf("%s builds %s: only numpy.ndarray is read", g, TypeName(args[0]))
		}
		if _, err := intTuple(args[1], "shape"); err != nil {
			return nil, fmt.Errorf("%s: %w", g, err)
		}
		if _, ok := args[2].([]byte); !ok {
			return nil, fmt.Errorf("%s: the type code is %s, want bytes", g, TypeName(args[2]))
		}
		return &pendingArray{}, nil
	case gDType:
		s, ok := args[0].(string)
		if !ok {
			return nil, fmt.Errorf("%s of %s: want a type string such as 'f4'", g, TypeName(args[0]))
		}
		dt, err := parseTypeString(s)
		if err != nil {
			return nil, err
		}
		return &numpyDType{dt: dt}, nil
	default: // gFromBuffer
		buf, ok := args[0].([]byte)
		if !ok {
			return nil, fmt.Errorf("%s: the buffer is %s, want bytes or a bytearray", g, TypeName(args[0]))
		}
		dt, ok := args[1].(*numpyDType)
		if !ok || dt.order == 0 {
			return nil, fmt.Errorf("%s: the dtype is %s, want a built numpy.dtype", g, TypeName(args[1]))
		}
		shape, err := intTuple(args[2], "shape")
		if err != nil {
			return nil, fmt.Errorf("%s: %w", g, err)
		}
		order, _ := args[3].(string)
		if order != "C" && order != "F" {
			return nil, fmt.Errorf("%s: order %s, want 'C' or 'F'", g, describe(args[3]))
		}
		return makeArray(dt, shape, order == "F", buf)
	}
}

// build applies the state of a BUILD opcode to obj: the byte order of a
// dtype, or the shape, dtype, order and data of an ndarray.
func build(obj, state any) error {
	st, ok := state.(*Tuple)
	if !ok {
		return fmt.Errorf("the state of %s is %s, want a tuple", TypeName(obj), TypeName(state))
	}
	s := st.Items
	switch x := obj.(type) {
	case *numpyDType:
		// (version, byteorder, subarray, names, fields, elsize, alignment, flags[, metadata])
		if x.order != 0 {
			return fmt.Errorf("the dtype is built twice")
		}
		if len(s) != 8 && len(s) != 9 {
			return fmt.Errorf("a dtype state of %d items, want 8 or 9", len(s))
		}
		if v, ok := s[0].(int64); !ok || (v != 3 && v != 4) {
			return fmt.Errorf("dtype state version %s, want 3 or 4", describe(s[0]))
		}
		for i, what := range []string{2: "subarray", 3: "names", 4: "fields"} {
			if what != "" && s[i] != nil {
				return fmt.Errorf("a dtype with %s: only plain numeric dtypes are read", what)
			}
		}
		if len(s) == 9 && s[8] != nil {
			return fmt.Errorf("a dtype with metadata: only plain numeric dtypes are read")
		}
		for _, i := range []int{5, 6} {
			if v, ok := s[i].(int64); !ok || v != -1 {
				return fmt.Errorf("dtype elsize and alignment %s and %s, want -1 (a builtin type)", describe(s[5]), describe(s[6]))
			}
		}
		order, _ := s[1].(string)
		switch {
		case order == "<" || order == ">":
		case order == "|" && x.dt.Size() == 1:
		default:
			return fmt.Errorf("byte order %s for %s, want '<' or '>'%s", describe(s[1]), x.dt, map[bool]string{true: " or '|'"}[x.dt.Size() == 1])
		}
		x.order = order[0]
		return nil
	case *pendingArray:
		// ([version,] shape, dtype, is_fortran, data)
		if x.arr != nil {
			return fmt.Errorf("the array is built twice")
		}
		if len(s) == 5 {
			if v, ok := s[0].(int64); !ok || v != 1 {
				return fmt.Errorf("ndarray state version %s, want 1", describe(s[0]))
			}
			s = s[1:]
		}
		if len(s) != 4 {
			return fmt.Errorf("an ndarray state of %d items, want 4 or 5", len(st.Items))
		}
		shape, err := intTuple(s[0], "shape")
		if err != nil {
			return err
		}
		dt, ok := s[1].(*numpyDType)
		if !ok || dt.order == 0 {
			return fmt.Errorf("the ndarray's dtype is %s, want a built numpy.dtype", TypeName(s[1]))
		}
		fortran, ok := s[2].(bool)
		if !ok {
			return fmt.Errorf("is_fortran is %s, want a bool", TypeName(s[2]))
		}
		var data []byte
		switch v := s[3].(type) {
		case []byte:
			data = v
		case *List:
			return fmt.Errorf("an object array (its data is a list): only numeric arrays are read")
		default:
			return fmt.Errorf("the ndarray's data is %s, want bytes", TypeName(s[3]))
		}
		arr, err := makeArray(dt, shape, fortran, data)
		if err != nil {
			return err
		}
		x.arr = arr
		return nil
	}
	return fmt.Errorf("BUILD on %s is outside the subset (numpy arrays and dtypes only)", TypeName(obj))
}

// parseTypeString parses the type string numpy's dtype reduce gives:
// a kind and a size ("f4", "b1", "u2"), maybe after a byte order.
func parseTypeString(s string) (dtype.Type, error) {
	t := strings.TrimLeft(s, "<>|=")
	if len(s)-len(t) > 1 {
		return 0, fmt.Errorf("numpy dtype %q is not read", clip(s))
	}
	for _, dt := range []dtype.Type{dtype.Bool, dtype.Int8, dtype.Uint8, dtype.Int16, dtype.Uint16, dtype.Int32, dtype.Uint32, dtype.Int64, dtype.Uint64, dtype.Float16, dtype.Float32, dtype.Float64} {
		if t == dt.Descr()[1:] {
			return dt, nil
		}
	}
	return 0, fmt.Errorf("numpy dtype %q is not read: only bool, int8 to int64, uint8 to uint64 and float16 to float64 (bfloat16 comes as uint16)", clip(s))
}

// intTuple reads a tuple of non-negative ints, such as a shape.
func intTuple(v any, what string) ([]int64, error) {
	t, ok := v.(*Tuple)
	if !ok {
		return nil, fmt.Errorf("the %s is %s, want a tuple of ints", what, TypeName(v))
	}
	if len(t.Items) > 32 {
		return nil, fmt.Errorf("the %s has %d dimensions, more than numpy's 32", what, len(t.Items))
	}
	out := make([]int64, len(t.Items))
	for i, x := range t.Items {
		n, ok := x.(int64)
		if !ok || n < 0 {
			return nil, fmt.Errorf("the %s has item %s, want a non-negative int", what, describe(x))
		}
		out[i] = n
	}
	return out, nil
}

// makeArray checks that data holds exactly the shape's elements and returns
// them as an array in C order, little-endian.
func makeArray(dt *numpyDType, shape []int64, fortran bool, data []byte) (*npy.Array, error) {
	size := dt.dt.Size()
	n := uint64(size)
	for _, d := range shape {
		hi, lo := bits.Mul64(n, uint64(d))
		if hi != 0 || lo > math.MaxInt64 {
			return nil, fmt.Errorf("shape %s is too large", npy.FormatShape(shape))
		}
		n = lo
	}
	if n != uint64(len(data)) {
		return nil, fmt.Errorf("a %s array of shape %s needs %d bytes of data, the pickle gives %d", dt.dt, npy.FormatShape(shape), n, len(data))
	}
	if dt.order == '>' && size > 1 {
		swapped := make([]byte, len(data))
		for i := 0; i < len(data); i += size {
			for j := 0; j < size; j++ {
				swapped[i+j] = data[i+size-1-j]
			}
		}
		data = swapped
	}
	if fortran && len(shape) > 1 {
		data = fortranToC(data, shape, size)
	}
	return &npy.Array{DType: dt.dt, Shape: shape, Data: data}, nil
}

// fortranToC reorders elements of size bytes from Fortran (first axis
// fastest) to C order (last axis fastest).
func fortranToC(data []byte, shape []int64, size int) []byte {
	out := make([]byte, len(data))
	nd := len(shape)
	stride := make([]int64, nd) // Fortran strides, in elements
	s := int64(1)
	for k := range shape {
		stride[k] = s
		s *= shape[k]
	}
	idx := make([]int64, nd)
	var off int64
	for c := 0; c < len(data)/size; c++ {
		copy(out[c*size:(c+1)*size], data[off*int64(size):])
		for k := nd - 1; k >= 0; k-- {
			idx[k]++
			off += stride[k]
			if idx[k] < shape[k] {
				break
			}
			off -= stride[k] * shape[k]
			idx[k] = 0
		}
	}
	return out
}

// describe renders a small value for messages.
func describe(v any) string {
	switch x := v.(type) {
	case string:
		return fmt.Sprintf("%q", clip(x))
	case int64, bool, float64:
		return fmt.Sprint(x)
	}
	return TypeName(v)
}

// clip shortens s for messages.
func clip(s string) string {
	if len(s) > 64 {
		return s[:61] + "..."
	}
	return s
}
