package rewrite

import (
	"hash/fnv"
	"math"
	"math/rand/v2"

	"github.com/peftonnx/peftonnx/adapter"
)

// initA returns fresh values for A [in, cols] of module. Kaiming-uniform
// with a=√5, as torch.nn.Linear and HF PEFT initialise lora_A, draws from
// U(-b, b) with b = √(6/((1+a²)·fan_in)) = 1/√in. Gaussian draws from
// N(0, (1/r)²), HF PEFT's init_lora_weights="gaussian". The stream depends
// only on seed and the module name, so adding a target does not change the
// other modules' values.
func initA(init adapter.LoRAInit, seed uint64, module string, in, cols int64, r int) []float32 {
	h := fnv.New64a()
	h.Write([]byte(module))
	rng := rand.New(rand.NewPCG(seed, h.Sum64()))
	out := make([]float32, in*cols)
	if init == adapter.InitGaussian {
		std := 1 / float64(r)
		for i := range out {
			out[i] = float32(rng.NormFloat64() * std)
		}
		return out
	}
	a := math.Sqrt(5)
	bound := math.Sqrt(6 / ((1 + a*a) * float64(in)))
	for i := range out {
		out[i] = float32((2*rng.Float64() - 1) * bound)
	}
	return out
}
