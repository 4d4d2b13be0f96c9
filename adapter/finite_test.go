package adapter

import (
	"math"
	"strings"
	"testing"
)

// TestNonFinite refuses an adapter that holds a NaN or an infinity (issue
// 16, E7) when it is validated, saved and loaded: the error names the
// module and the factor.
func TestNonFinite(t *testing.T) {
	for _, bad := range []float32{float32(math.NaN()), float32(math.Inf(-1))} {
		ad := NewLoRA(DefaultLoRAConfig(".*q_proj"))
		b := Zeros(8, 4)
		b.Data[5] = bad
		ad.Weights["layers.0.q_proj"] = LoRAWeights{A: Zeros(4, 8), B: b}
		err := ad.Validate()
		if err == nil || !strings.Contains(err.Error(), "layers.0.q_proj") || !strings.Contains(err.Error(), "lora_B: value [5]") {
			t.Errorf("%g: Validate got %v", bad, err)
		}
		if err := SaveDir(t.TempDir(), ad); err == nil {
			t.Errorf("%g: SaveDir wrote it", bad)
		}
	}
}
