package runtime_test

import (
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/internal/half"
	rt "github.com/peftonnx/peftonnx/runtime"
)

func TestTensorConstructors(t *testing.T) {
	tests := []struct {
		reason string
		make   func() (*rt.Tensor, error)
		dtype  dtype.Type
		shape  []int64
		err    string
	}{
		{"float32", func() (*rt.Tensor, error) { return rt.NewFloat32([]int64{2, 3}, make([]float32, 6)) }, dtype.Float32, []int64{2, 3}, ""},
		{"float16", func() (*rt.Tensor, error) { return rt.NewFloat16([]int64{4}, make([]uint16, 4)) }, dtype.Float16, []int64{4}, ""},
		{"bfloat16", func() (*rt.Tensor, error) { return rt.NewBFloat16([]int64{1, 1}, make([]uint16, 1)) }, dtype.BFloat16, []int64{1, 1}, ""},
		{"float64 scalar", func() (*rt.Tensor, error) { return rt.NewFloat64(nil, []float64{1}) }, dtype.Float64, []int64{}, ""},
		{"int64 empty", func() (*rt.Tensor, error) { return rt.NewInt64([]int64{0, 5}, nil) }, dtype.Int64, []int64{0, 5}, ""},
		{"int32", func() (*rt.Tensor, error) { return rt.NewInt32([]int64{2}, []int32{1, 2}) }, dtype.Int32, []int64{2}, ""},
		{"int8", func() (*rt.Tensor, error) { return rt.NewInt8([]int64{2}, []int8{1, 2}) }, dtype.Int8, []int64{2}, ""},
		{"uint8", func() (*rt.Tensor, error) { return rt.NewUint8([]int64{2}, []uint8{1, 2}) }, dtype.Uint8, []int64{2}, ""},
		{"bool", func() (*rt.Tensor, error) { return rt.NewBool([]int64{2}, []bool{true, false}) }, dtype.Bool, []int64{2}, ""},
		{"too few", func() (*rt.Tensor, error) { return rt.NewFloat32([]int64{2, 3}, make([]float32, 5)) }, 0, nil,
			"runtime: float32 tensor of shape [2 3] needs 6 elements, got 5"},
		{"too many", func() (*rt.Tensor, error) { return rt.NewInt64(nil, []int64{1, 2}) }, 0, nil, "needs 1 elements, got 2"},
		{"negative", func() (*rt.Tensor, error) { return rt.NewFloat32([]int64{2, -1}, nil) }, 0, nil, "negative dimension -1 at axis 1"},
		{"overflow", func() (*rt.Tensor, error) { return rt.Zeros(dtype.Float32, []int64{1 << 40, 1 << 40}) }, 0, nil, "too many elements"},
		{"unsupported", func() (*rt.Tensor, error) { return rt.Zeros(dtype.Type(8), []int64{1}) }, 0, nil, "element type string is not supported"},
	}
	for i, tc := range tests {
		x, err := tc.make()
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("test %d (%s): got %v, want error %q", i, tc.reason, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("test %d (%s): %v", i, tc.reason, err)
			continue
		}
		if x.DType() != tc.dtype || !slices.Equal(x.Shape(), tc.shape) {
			t.Errorf("test %d (%s): got %v, want %s%v", i, tc.reason, x, tc.dtype, tc.shape)
		}
	}
}

func TestTensorAccessors(t *testing.T) {
	data := []float32{1, 2, 3, 4}
	x := must(rt.NewFloat32([]int64{2, 2}, data))
	if &x.Float32()[0] != &data[0] {
		t.Error("Float32 does not return the backing slice")
	}
	if x.Len() != 4 || x.Rank() != 2 || x.String() != "float32[2 2]" {
		t.Errorf("Len %d Rank %d String %q", x.Len(), x.Rank(), x.String())
	}
	c := x.Clone()
	c.Float32()[0] = 9
	if data[0] != 1 {
		t.Error("Clone shares data")
	}
	s := x.Shape()
	s[0] = 7
	if x.Shape()[0] != 2 {
		t.Error("Shape returns the tensor's own slice")
	}
	defer func() {
		if r := recover(); r == nil || !strings.Contains(r.(string), "int64 accessor called on a float32 tensor") {
			t.Errorf("Int64 on a float32 tensor: recovered %v", r)
		}
	}()
	x.Int64()
}

func TestTensorConversions(t *testing.T) {
	f := []float32{0, 1.5, -2, 65504, float32(math.Inf(1))}
	h := must(rt.NewFloat16FromFloat32([]int64{5}, f))
	if got := h.ToFloat32(); !slices.Equal(got, f) {
		t.Errorf("float16 round trip: got %v, want %v", got, f)
	}
	if h.Float16()[1] != half.Float32ToFloat16(1.5) {
		t.Errorf("float16 bits %x", h.Float16()[1])
	}
	bf := must(rt.NewBFloat16([]int64{2}, []uint16{half.Float32ToBFloat16(3), half.Float32ToBFloat16(-0.5)}))
	if got := bf.ToFloat64(); !slices.Equal(got, []float64{3, -0.5}) {
		t.Errorf("bfloat16 ToFloat64: %v", got)
	}
	b := must(rt.NewBool([]int64{3}, []bool{true, false, true}))
	if got := b.ToFloat32(); !slices.Equal(got, []float32{1, 0, 1}) {
		t.Errorf("bool ToFloat32: %v", got)
	}
	i := must(rt.NewInt64([]int64{2}, []int64{-3, 1 << 40}))
	if got := i.ToFloat64(); !slices.Equal(got, []float64{-3, 1 << 40}) {
		t.Errorf("int64 ToFloat64: %v", got)
	}
}

func TestDType(t *testing.T) {
	for _, tc := range []struct {
		d    dtype.Type
		name string
		size int
	}{
		{dtype.Float32, "float32", 4}, {dtype.Float16, "float16", 2}, {dtype.BFloat16, "bfloat16", 2},
		{dtype.Float64, "float64", 8}, {dtype.Int64, "int64", 8}, {dtype.Bool, "bool", 1},
		{dtype.Type(8), "string", 0}, {dtype.Type(99), "dtype(99)", 0},
	} {
		if tc.d.String() != tc.name || tc.d.Size() != tc.size || rt.Supported(tc.d) != (tc.size > 0) {
			t.Errorf("%d: got %s size %d, want %s size %d", tc.d, tc.d, tc.d.Size(), tc.name, tc.size)
		}
	}
}

// TestZeroElementShape makes tensors of shapes whose other dimensions
// would overflow but which hold a 0 (issue 16, E10): empty tensors, not
// "too many elements".
func TestZeroElementShape(t *testing.T) {
	for _, shape := range [][]int64{{1 << 40, 1 << 40, 0}, {0, 1 << 62}} {
		x, err := rt.Zeros(dtype.Float32, shape)
		if err != nil {
			t.Errorf("shape %v: %v", shape, err)
			continue
		}
		if n := len(x.Float32()); n != 0 {
			t.Errorf("shape %v: %d elements", shape, n)
		}
	}
}
