package runtime_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/feed"
	rt "github.com/peftonnx/peftonnx/runtime"
)

func TestFromInt64s(t *testing.T) {
	tests := []struct {
		elem dtype.Type
		v    []int64
		want string // fmt of the data, or the error
	}{
		{dtype.Int64, []int64{1, -2}, "[1 -2]"},
		{dtype.Int32, []int64{7, 31999}, "[7 31999]"},
		{dtype.Int32, []int64{1 << 40, 0}, "value 1099511627776 at index 0 does not fit int32"},
		{dtype.Int8, []int64{-128, 127}, "[-128 127]"},
		{dtype.Uint8, []int64{0, -1}, "value -1 at index 1 does not fit uint8"},
		{dtype.Bool, []int64{1, 0}, "[true false]"},
		{dtype.Bool, []int64{2, 0}, "value 2 at index 0 does not fit bool"},
		{dtype.Float32, []int64{1, 0}, "[1 0]"},
		{dtype.Float16, []int64{1, 0}, "[15360 0]"},
	}
	for _, tc := range tests {
		x, err := rt.FromInt64s(tc.elem, []int64{1, 2}, tc.v)
		got := ""
		if err != nil {
			got = err.Error()
		} else {
			got = fmt.Sprint(x.Data())
			if x.DType() != tc.elem {
				t.Errorf("%s: got a %s tensor", tc.elem, x.DType())
			}
		}
		if !strings.Contains(got, tc.want) {
			t.Errorf("FromInt64s(%s, %v): got %s want %s", tc.elem, tc.v, got, tc.want)
		}
	}
}

func TestFromFloat64s(t *testing.T) {
	tests := []struct {
		elem dtype.Type
		v    []float64
		want string
	}{
		{dtype.Float32, []float64{0.5, -1}, "[0.5 -1]"},
		{dtype.Int32, []float64{3, 4}, "[3 4]"},
		{dtype.Int32, []float64{3, 4.5}, "value 4.5 at index 1 is not a whole number for int32"},
		{dtype.Uint8, []float64{-1, 0}, "does not fit uint8"},
	}
	for _, tc := range tests {
		x, err := rt.FromFloat64s(tc.elem, []int64{2}, tc.v)
		got := ""
		if err != nil {
			got = err.Error()
		} else {
			got = fmt.Sprint(x.Data())
		}
		if !strings.Contains(got, tc.want) {
			t.Errorf("FromFloat64s(%s, %v): got %s want %s", tc.elem, tc.v, got, tc.want)
		}
	}
}

func TestDefaultFeed(t *testing.T) {
	in := func(name string, dt dtype.Type, dims []int64, params []string) feed.Input {
		return feed.Input{Name: name, DType: dt, Shape: dims, DimParams: params}
	}
	plan := feed.Classify([]feed.Input{
		in("input_ids", dtype.Int32, []int64{-1, -1}, []string{"b", "s"}),
		in("input_mask", dtype.Int32, []int64{-1, -1}, []string{"b", "t"}),
		in("position_ids", dtype.Int64, []int64{-1, -1}, []string{"b", "s"}),
		in("segment_ids", dtype.Int8, []int64{-1, -1}, []string{"b", "s"}),
		in("past_key_values.0.key", dtype.Float16, []int64{-1, 2, -1, 4}, []string{"b", "", "past", ""}),
		in("past_conv.0", dtype.Float32, []int64{-1, 3, 2}, []string{"b", "", ""}),
	}, nil)
	tests := []struct {
		name  string
		shape string
		data  string
	}{
		{"input_mask", "[2 3]", "[1 1 1 1 1 1]"},
		{"position_ids", "[2 2]", "[1 2 1 2]"},
		{"segment_ids", "[2 2]", "[0 0 0 0]"},
		{"past_key_values.0.key", "[2 2 1 4]", "[0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0]"},
		{"past_conv.0", "[2 3 2]", "[0 0 0 0 0 0 0 0 0 0 0 0]"},
	}
	for _, tc := range tests {
		s, _ := plan.Lookup(tc.name)
		x, err := rt.DefaultFeed(s, 2, 2, 1)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := fmt.Sprint(x.Shape()); got != tc.shape || fmt.Sprint(x.Data()) != tc.data || x.DType() != s.DType {
			t.Errorf("%s: got %s %v %v, want %s %s %s", tc.name, x.DType(), got, x.Data(), s.DType, tc.shape, tc.data)
		}
	}
	s, _ := plan.Lookup("input_ids")
	if _, err := rt.DefaultFeed(s, 1, 1, 0); err == nil || !strings.Contains(err.Error(), "has no default") {
		t.Errorf("token ids: got %v, want no default", err)
	}
}
