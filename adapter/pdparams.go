package adapter

import (
	"fmt"
	"slices"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/internal/pickle"
	"github.com/peftonnx/peftonnx/npy"
)

// Keys that paddle.save adds to a state dict beside its tensors.
const (
	// pdparamsNameTable maps each structured name to the tensor's
	// parameter name ("linear_0.w_0"); paddle.load drops it.
	pdparamsNameTable = "StructuredToParameterName@@"
	// pdparamsUnpackInfo lists the 1-D slices ("<name>@@.0", …) that
	// protocols 2 and 3 split arrays of over 1 GiB into, with each array's
	// "OriginShape".
	pdparamsUnpackInfo = "UnpackBigParamInfor@@"
)

// ReadPdparams reads a .pdparams file, the pickle paddle.save writes for a
// state dict, and returns its tensors by name. Arrays that protocol 2 or 3
// split into slices (UnpackBigParamInfor@@) are joined again, and the name
// table (StructuredToParameterName@@) is dropped, as paddle.load does.
// numpy has no bfloat16, and paddle stores bfloat16 tensors as uint16
// arrays of their bits: such arrays come back as dtype.BFloat16 tensors. Errors
// name the file and the key at fault.
func ReadPdparams(path string) (map[string]*Tensor, error) {
	return readDecoded(path, pickle.ReadFile, pdparamsTensors)
}

// DecodePdparams is ReadPdparams on the bytes of a file.
func DecodePdparams(data []byte) (map[string]*Tensor, error) {
	d, err := pickle.DecodeDict(data)
	if err != nil {
		return nil, errorf("%w", err)
	}
	return pdparamsTensors(d)
}

// EncodePdparams returns tensors as paddle.save writes a state dict:
// pickle protocol 4 of a dict from name to numpy array, in sorted order,
// followed by the name table, which maps each name to itself. dtype.BFloat16
// tensors are written as uint16 arrays of their bits, as paddle does.
func EncodePdparams(tensors map[string]*Tensor) ([]byte, error) {
	d := pickle.NewDict()
	names := pickle.NewDict()
	for _, name := range sortedKeys(tensors) {
		if name == pdparamsNameTable || name == pdparamsUnpackInfo {
			return nil, formatErrorf("", name, "is a key paddle.save reserves")
		}
		a, err := tensorArray(tensors[name])
		if err != nil {
			return nil, formatErrorf("", name, "%w", err)
		}
		d.Set(name, a)
		names.Set(name, name)
	}
	d.Set(pdparamsNameTable, names)
	b, err := pickle.Encode(d, 4)
	if err != nil {
		return nil, errorf("%w", err)
	}
	return b, nil
}

// WritePdparams writes EncodePdparams(tensors) to path atomically.
func WritePdparams(path string, tensors map[string]*Tensor) error {
	b, err := EncodePdparams(tensors)
	if err != nil {
		return inFile(err, path)
	}
	return writeFileAtomic(path, b)
}

// pdparamsTensors converts a decoded state dict.
func pdparamsTensors(d *pickle.Dict) (map[string]*Tensor, error) {
	arrays := map[string]*npy.Array{}
	var unpack *pickle.Dict
	for _, key := range d.Keys() {
		v, _ := d.Get(key)
		switch key {
		case pdparamsNameTable:
			continue
		case pdparamsUnpackInfo:
			u, ok := v.(*pickle.Dict)
			if !ok {
				return nil, formatErrorf("", key, "holds a %s, want a dict", pickle.TypeName(v))
			}
			unpack = u
			continue
		}
		a, ok := v.(*npy.Array)
		if !ok {
			return nil, formatErrorf("", key, "holds a %s, not an array", pickle.TypeName(v))
		}
		arrays[key] = a
	}
	if unpack != nil {
		if err := joinSlices(arrays, unpack); err != nil {
			return nil, err
		}
	}
	tensors := make(map[string]*Tensor, len(arrays))
	for key, a := range arrays {
		t, err := arrayTensor(a)
		if err != nil {
			return nil, formatErrorf("", key, "%w", err)
		}
		tensors[key] = t
	}
	return tensors, nil
}

// joinSlices replaces the slices that UnpackBigParamInfor@@ lists by the
// arrays they were cut from: {name: {"OriginShape": shape, "slices":
// [names of 1-D arrays]}}.
func joinSlices(arrays map[string]*npy.Array, unpack *pickle.Dict) error {
	for _, name := range unpack.Keys() {
		v, _ := unpack.Get(name)
		info, ok := v.(*pickle.Dict)
		if !ok {
			return formatErrorf("", pdparamsUnpackInfo, "entry %q is a %s, want a dict", name, pickle.TypeName(v))
		}
		shape, err := pyInts(info, "OriginShape")
		if err != nil {
			return formatErrorf("", pdparamsUnpackInfo, "entry %q: %w", name, err)
		}
		sv, _ := info.Get("slices")
		list, ok := sv.(*pickle.List)
		if !ok {
			return formatErrorf("", pdparamsUnpackInfo, "entry %q: slices is a %s, want a list", name, pickle.TypeName(sv))
		}
		if _, dup := arrays[name]; dup {
			return formatErrorf("", name, "is both an array and split into slices")
		}
		var joined *npy.Array
		for _, item := range list.Items {
			part, _ := item.(string)
			a := arrays[part]
			switch {
			case a == nil:
				return formatErrorf("", pdparamsUnpackInfo, "entry %q: slice %s is not in the file", name, fmt.Sprint(item))
			case len(a.Shape) != 1:
				return formatErrorf("", part, "a slice of %q has shape %v, want 1-D", name, a.Shape)
			case joined == nil:
				joined = &npy.Array{DType: a.DType}
			case a.DType != joined.DType:
				return formatErrorf("", part, "a slice of %q is %s, the others %s", name, a.DType, joined.DType)
			}
			joined.Data = append(joined.Data, a.Data...)
			delete(arrays, part)
		}
		if joined == nil {
			return formatErrorf("", pdparamsUnpackInfo, "entry %q has no slices", name)
		}
		joined.Shape = shape
		if err := joined.Validate(); err != nil {
			return formatErrorf("", name, "its slices do not make shape %v: %w", shape, err)
		}
		arrays[name] = joined
	}
	return nil
}

// pyInts reads a tuple or list of non-negative ints from d[key].
func pyInts(d *pickle.Dict, key string) ([]int64, error) {
	v, _ := d.Get(key)
	var items []any
	switch x := v.(type) {
	case *pickle.Tuple:
		items = x.Items
	case *pickle.List:
		items = x.Items
	default:
		return nil, fmt.Errorf("%s is a %s, want a tuple of ints", key, pickle.TypeName(v))
	}
	out := make([]int64, len(items))
	for i, it := range items {
		n, ok := it.(int64)
		if !ok || n < 0 {
			return nil, fmt.Errorf("%s has item %v, want a non-negative int", key, it)
		}
		out[i] = n
	}
	return out, nil
}

// arrayTensor converts a numpy array to a tensor. numpy has no bfloat16:
// paddle stores it as uint16, and so uint16 arrays are bfloat16 here.
func arrayTensor(a *npy.Array) (*Tensor, error) {
	t := a.DType
	if t == dtype.Uint16 {
		t = dtype.BFloat16
	}
	if !storable(t) || t == dtype.BFloat16 && a.DType != dtype.Uint16 {
		return nil, fmt.Errorf("a numpy %s array: adapter tensors are float32, float16, bfloat16 (uint16), float64, int64, int32, int8 or uint8", a.DType)
	}
	data, err := decodeData(t, a.Data)
	if err != nil {
		return nil, err
	}
	return &Tensor{DType: t, Shape: slices.Clone(a.Shape), Data: data}, nil
}

// tensorArray converts a tensor to the numpy array paddle would save:
// bfloat16 as uint16 bits.
func tensorArray(t *Tensor) (*npy.Array, error) {
	if err := t.check(); err != nil {
		return nil, err
	}
	dt := storedAs(t.DType)
	raw, err := encodeData(dt, t.Data)
	if err != nil {
		return nil, err
	}
	if dt == dtype.BFloat16 {
		dt = dtype.Uint16
	}
	return &npy.Array{DType: dt, Shape: slices.Clone(t.Shape), Data: raw}, nil
}
