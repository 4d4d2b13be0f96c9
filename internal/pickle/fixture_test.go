package pickle

import (
	"math"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"github.com/peftonnx/peftonnx/npy"
)

// TestDecodeFixtures reads the pickles that testdata/gen_state_dict.py made
// with CPython 3.11 and numpy 1.24 (protocol 2 as a dict, protocol 4 as an
// OrderedDict), so that the reader is tested where Python is missing.
func TestDecodeFixtures(t *testing.T) {
	for _, name := range []string{"small.p2", "small.p4"} {
		t.Run(name, func(t *testing.T) {
			d, err := ReadFile(filepath.Join("testdata", name+".pkl"))
			if err != nil {
				t.Fatal(err)
			}
			checkManifest(t, name, d, readManifest(t, filepath.Join("testdata", name+".json")))
			checkSmallValues(t, d)
		})
	}
}

// checkSmallValues checks values of the small state dict against the
// formulas in gen_state_dict.py.
func checkSmallValues(t *testing.T, d *Dict) {
	t.Helper()
	loraA := make([]float32, 12)
	for i := range loraA {
		loraA[i] = float32(i)*0.25 - 1
	}
	fortran := make([]float32, 24) // C order of arange(24).reshape(2, 3, 4)
	for i := range fortran {
		fortran[i] = float32(i)
	}
	checkArray(t, d, "llama.layers.0.self_attn.q_proj.lora_A", []int64{3, 4}, loraA)
	checkArray(t, d, "llama.layers.0.self_attn.q_proj.lora_B", []int64{4, 3}, make([]float32, 12))
	checkArray(t, d, "fortran", []int64{2, 3, 4}, fortran)
	checkArray(t, d, "big_endian_f4", []int64{5}, []float32{-2, -1, 0, 1, 2})
	checkArray(t, d, "big_endian_i8", []int64{2}, []int64{-1 << 40, 3})
	checkArray(t, d, "i64", []int64{3}, []int64{-1 << 40, 0, 1 << 62})
	checkArray(t, d, "i8", []int64{4}, []int8{-128, -1, 0, 127})
	checkArray(t, d, "u64", []int64{2}, []uint64{1 << 63, 1})
	checkArray(t, d, "bool", []int64{1, 3}, []bool{true, false, true})
	checkArray(t, d, "bf16_bits", []int64{3}, []uint16{0x3f80, 0xc020, 0x4049})
	checkArray(t, d, "scalar", []int64{}, []float64{3.5})
	checkArray(t, d, "empty", []int64{0, 3}, []float32{})
	if v, _ := d.Get("f16"); v != nil {
		a := v.(*npy.Array)
		bits, err := a.Float16Bits()
		if err != nil || !slices.Equal(bits, []uint16{0xb955, 0xb555, 0, 0x3555, 0x3955}) {
			t.Errorf("f16: got %04x (%v), want (arange(5)-2)/3 in float16", bits, err)
		}
	}

	meta, _ := d.Get("meta")
	wantMeta := []any{int64(1), int64(-5), int64(1 << 40), int64(math.MinInt64), 1.5, nil, true, false, "str", []byte{0, 0xff}, []byte{}, NewTuple(int64(2), int64(3))}
	if l, ok := meta.(*List); !ok || !equalValues(l.Items, wantMeta) {
		t.Errorf("meta: got %#v, want %#v", meta, wantMeta)
	}
	unpack, _ := d.Get("UnpackBigParamInfor@@")
	x, _ := unpack.(*Dict).Get("x")
	shape, _ := x.(*Dict).Get("OriginShape")
	slicesV, _ := x.(*Dict).Get("slices")
	if !equalValues(shape, NewTuple(int64(2), int64(3))) || !equalValues(slicesV, NewList("x@@.0", "x@@.1")) {
		t.Errorf("UnpackBigParamInfor@@: got OriginShape %v slices %v", shape, slicesV)
	}
	names, _ := d.Get("StructuredToParameterName@@")
	arrays := 0
	for _, k := range d.Keys() {
		if v, _ := d.Get(k); TypeName(v) == "numpy.ndarray" {
			arrays++
		}
	}
	nd, ok := names.(*Dict)
	if !ok || nd.Len() != arrays {
		t.Fatalf("StructuredToParameterName@@: got %s, want a dict of %d names, one per array", TypeName(names), arrays)
	}
	if n, _ := nd.Get("fortran"); n != "param_14.w_0" {
		t.Errorf(`StructuredToParameterName@@["fortran"] = %v, want "param_14.w_0"`, n)
	}
}

// checkArray checks the dtype, shape and values of the array under key.
func checkArray[T npy.Elem](t *testing.T, d *Dict, key string, shape []int64, want []T) {
	t.Helper()
	v, _ := d.Get(key)
	a, ok := v.(*npy.Array)
	if !ok {
		t.Errorf("%s: got %s, want an array", key, TypeName(v))
		return
	}
	got, err := npy.Values[T](a)
	if err != nil {
		t.Errorf("%s: %v", key, err)
		return
	}
	if !slices.Equal(a.Shape, shape) || !slices.Equal(got, want) {
		t.Errorf("%s: got %v %v, want %v %v", key, a.Shape, got, shape, want)
	}
}

// equalValues compares decoded values structurally.
func equalValues(a, b any) bool {
	switch x := a.(type) {
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !equalValues(x[i], y[i]) {
				return false
			}
		}
		return true
	case *Tuple:
		y, ok := b.(*Tuple)
		return ok && equalValues(x.Items, y.Items)
	case *List:
		y, ok := b.(*List)
		return ok && equalValues(x.Items, y.Items)
	case *Dict:
		y, ok := b.(*Dict)
		if !ok || !slices.Equal(x.Keys(), y.Keys()) {
			return false
		}
		for k, v := range x.All() {
			if w, _ := y.Get(k); !equalValues(v, w) {
				return false
			}
		}
		return true
	case *npy.Array:
		y, ok := b.(*npy.Array)
		return ok && x.DType == y.DType && slices.Equal(x.Shape, y.Shape) && string(x.Data) == string(y.Data)
	case []byte:
		y, ok := b.([]byte)
		return ok && string(x) == string(y)
	case float64:
		y, ok := b.(float64)
		return ok && (x == y || math.IsNaN(x) && math.IsNaN(y))
	}
	return reflect.DeepEqual(a, b)
}
