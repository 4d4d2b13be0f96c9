package rewrite

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
)

// TestCheckMerge checks that CheckMerge gives the error Merge would, with
// the same options, and changes nothing: on int4 layers, without and with
// Dequantize or Requantize, and on a model without LoRA.
func TestCheckMerge(t *testing.T) {
	base, _ := int4Builder(t)
	adapted := base.Clone()
	if _, _, err := InjectLoRA(adapted, config(4, 8, ".*_proj", "lm_head"), WithSeed(1)); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		opts []Option
		want string // "" for no error
	}{
		{"plain", nil, "is int4 (MatMulNBits)"},
		{"Dequantize", []Option{Dequantize()}, ""},
		{"Requantize", []Option{Requantize()}, ""},
		{"both", []Option{Dequantize(), Requantize()}, "exclude each other"},
	} {
		before := adapted.Clone()
		err := CheckMerge(adapted, tc.opts...)
		if !proto.Equal(adapted.Proto, before.Proto) {
			t.Errorf("%s: CheckMerge changed the model", tc.name)
		}
		merr := Merge(before, tc.opts...)
		switch {
		case tc.want == "" && (err != nil || merr != nil):
			t.Errorf("%s: CheckMerge %v, Merge %v; want no error", tc.name, err, merr)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || merr == nil || err.Error() != merr.Error()):
			t.Errorf("%s: CheckMerge %v, Merge %v; want Merge's error, with %q", tc.name, err, merr, tc.want)
		}
	}
	err, merr := CheckMerge(base), Merge(base.Clone())
	if err == nil || merr == nil || err.Error() != merr.Error() {
		t.Errorf("model without LoRA: CheckMerge %v, Merge %v; want Merge's error", err, merr)
	}
}
