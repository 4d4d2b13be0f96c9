package quant_test

import (
	"fmt"

	"github.com/peftonnx/peftonnx/quant"
)

func ExampleQuantize() {
	// A 40×2 weight, [K, N] as a MatMul's B input holds it.
	const k, n = 40, 2
	values := make([]float32, k*n)
	for i := range values {
		values[i] = float32(i%9-4) / 8
	}
	w, err := quant.Quantize(values, k, n, quant.Options{Bits: 4, BlockSize: 32, Symmetric: true})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("B", w.BShape(), "scales", w.ScalesShape(), "symmetric", w.Symmetric())
	back, err := w.Dequantize()
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("first row:", values[:n], "->", back[:n])
	// Output:
	// B [2 2 16] scales [2 2] symmetric true
	// first row: [-0.5 -0.375] -> [-0.5 -0.375]
}
