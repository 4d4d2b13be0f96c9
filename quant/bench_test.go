package quant_test

import (
	"testing"

	"github.com/peftonnx/peftonnx/quant"
)

// BenchmarkQuantize rounds one GPT-2-small projection, 768×3072.
func BenchmarkQuantize(b *testing.B) {
	const k, n = 768, 3072
	values := normals(k*n, 0.02, 1)
	b.SetBytes(4 * k * n)
	for b.Loop() {
		if _, err := quant.Quantize(values, k, n, quant.Options{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDequantize expands the same projection back to float32.
func BenchmarkDequantize(b *testing.B) {
	const k, n = 768, 3072
	w, err := quant.Quantize(normals(k*n, 0.02, 1), k, n, quant.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(4 * k * n)
	for b.Loop() {
		if _, err := w.Dequantize(); err != nil {
			b.Fatal(err)
		}
	}
}
