package runtime_test

import (
	"testing"

	rt "github.com/peftonnx/peftonnx/runtime"
)

func TestEnumStrings(t *testing.T) {
	for _, c := range []struct {
		got  string
		want string
	}{
		{rt.KVPerLayer.String(), "past_key_values.{i}.key/value"},
		{rt.KVStacked.String(), "past_{i}"},
		{rt.KVNamed.String(), "named caches"},
		{rt.KVLayout(0).String(), "KVLayout(0)"},
		{rt.OptimizeNone.String(), "none"},
		{rt.OptimizeBasic.String(), "basic"},
		{rt.OptimizeExtended.String(), "extended"},
		{rt.OptimizeAll.String(), "all"},
		{rt.OptimizationLevel(-1).String(), "OptimizationLevel(-1)"},
	} {
		if c.got != c.want {
			t.Errorf("String() = %q, want %q", c.got, c.want)
		}
	}
}
