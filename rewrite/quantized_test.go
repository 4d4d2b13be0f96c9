package rewrite

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/models"
)

// TestQDQLinearLoRA adapts the float side of a QDQ int8 linear layer and
// holds it to the layer's definition computed in Go, y = x·dq(Wq) + b +
// s·x·A·B with dq(Wq) = (Wq − zero_point)·scale; a plain Merge refuses
// and changes nothing, and Merge with Dequantize matches the adapted
// model with a float weight in place of the DequantizeLinear.
func TestQDQLinearLoRA(t *testing.T) {
	for _, perAxis := range []bool{false, true} {
		name := "per-tensor"
		if perAxis {
			name = "per-axis"
		}
		t.Run(name, func(t *testing.T) {
			base, err := models.QDQLinear(perAxis, 3)
			if err != nil {
				t.Fatal(err)
			}
			ls, err := FindLayers(base)
			if err != nil {
				t.Fatal(err)
			}
			if len(ls) != 1 || ls[0].Module != "fc" || !ls[0].Dequantized() || ls[0].In != 8 || ls[0].Out != 6 {
				t.Fatalf("layers: %+v, want the dequantized fc 8×6", ls)
			}
			// Multiples of 1/32 in range pass the activation's QDQ exactly.
			rng := rand.New(rand.NewPCG(5, 5))
			x := make([]float32, 3*8)
			for i := range x {
				x[i] = float32(rng.IntN(121)-60) / 32
			}
			runQDQ := func(m *graph.Model) []float32 { return runXY(t, m, []int64{3, 8}, x) }
			baseOut := runQDQ(base)
			m := base.Clone()
			cfg := config(2, 4, "fc")
			sites, _, err := InjectLoRA(m, cfg, WithSeed(1))
			if err != nil {
				t.Fatal(err)
			}
			// ONNX Runtime fuses the base's QDQ MatMul into an integer
			// kernel, and the branch's Add changes what it fuses: equal to
			// rounding, not bit for bit.
			if d := maxDiff(runQDQ(m), baseOut); d > 1e-5 {
				t.Fatalf("fresh injection changed y by %g", d)
			}
			randomizeB(t, m, sites, 2, 0.5)
			adapted := runQDQ(m)

			get := func(name string) []float32 {
				v, err := m.Float32s(m.Initializer(name))
				if err != nil {
					t.Fatal(err)
				}
				return v
			}
			wq, err := m.TensorBytes(m.Initializer("fc.weight_quantized"))
			if err != nil {
				t.Fatal(err)
			}
			zp, err := m.TensorBytes(m.Initializer("fc.weight_zero_point"))
			if err != nil {
				t.Fatal(err)
			}
			scale, bias, a, b := get("fc.weight_scale"), get("fc.bias"), get(sites[0].A), get(sites[0].B)
			want := make([]float32, 3*6)
			for n := 0; n < 3; n++ {
				for j := 0; j < 6; j++ {
					k := 0
					if perAxis {
						k = j
					}
					acc := float64(bias[j])
					for i := 0; i < 8; i++ {
						w := float64(int8(wq[i*6+j])-int8(zp[k])) * float64(scale[k])
						acc += float64(x[n*8+i]) * w
						for r := 0; r < 2; r++ {
							acc += 2 * float64(x[n*8+i]) * float64(a[i*2+r]) * float64(b[r*6+j])
						}
					}
					want[n*6+j] = float32(acc)
				}
			}
			if d := maxDiff(adapted, want); d > 1e-4 {
				t.Errorf("adapted y differs from the layer's definition by %g", d)
			}
			if d := maxDiff(adapted, baseOut); d < 1e-2 {
				t.Fatalf("random B changed y by only %g", d)
			}

			nodes := len(m.Graph().Node)
			err = Merge(m)
			if err == nil || !strings.Contains(err.Error(), "cannot be exact in int8") || !strings.Contains(err.Error(), "dequantized float weight") {
				t.Fatalf("Merge of a QDQ weight: %v, want a refusal that says why and offers dequantizing", err)
			}
			if len(m.Graph().Node) != nodes {
				t.Fatalf("the refused Merge changed the graph")
			}
			if err := Merge(m, Dequantize()); err != nil {
				t.Fatal(err)
			}
			if d := maxDiff(runQDQ(m), adapted); d > 1e-5 {
				t.Errorf("dequantized merge differs from the adapted model by %g", d)
			}
			if m.Initializer("fc.weight_quantized") != nil || len(m.Graph().Node) != len(base.Graph().Node)-1 {
				t.Errorf("dequantized merge: the int8 weight or its DequantizeLinear is still there")
			}
		})
	}
}
