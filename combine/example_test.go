package combine_test

import (
	"fmt"
	"log"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/combine"
)

// Example combines two rank-1 adapters of one module by cat, adding the
// first and subtracting the second: the result has rank 2, scaling 1, and
// its delta A·B is s1·A1·B1 - s2·A2·B2.
func Example() {
	rank1 := func(alpha float64, a, b []float32) *adapter.Adapter {
		cfg := adapter.DefaultLoRAConfig(`.*q_proj`)
		cfg.R, cfg.Alpha = 1, alpha
		ad := adapter.NewLoRA(cfg)
		ad.Weights["model.layers.0.self_attn.q_proj"] = adapter.LoRAWeights{
			A: adapter.NewTensor([]int64{2, 1}, a), // [in, r]
			B: adapter.NewTensor([]int64{1, 2}, b), // [r, out]
		}
		return ad
	}
	sum, err := combine.Adapters([]combine.Input{
		{Name: "style", Adapter: rank1(2, []float32{1, 2}, []float32{1, 0})},  // delta 2·A·B = [[2 0] [4 0]]
		{Name: "safety", Adapter: rank1(1, []float32{1, 1}, []float32{0, 3})}, // delta A·B = [[0 3] [0 3]]
	}, combine.Options{Method: combine.Cat, Weights: []float64{1, -1}})
	if err != nil {
		log.Fatal(err)
	}
	w := sum.Weights["model.layers.0.self_attn.q_proj"]
	fmt.Println("r:", sum.LoRA.R, "alpha:", sum.LoRA.Alpha, "rsLoRA:", sum.LoRA.UseRSLoRA)
	fmt.Println("A:", w.A.Shape, w.A.Data)
	fmt.Println("B:", w.B.Shape, w.B.Data)
	// Output:
	// r: 2 alpha: 2 rsLoRA: false
	// A: [2 2] [2 -1 4 -1]
	// B: [2 2] [1 0 0 3]
}
