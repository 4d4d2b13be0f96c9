package graph_test

import (
	"os"
	"testing"

	"github.com/peftonnx/peftonnx/graph"
)

// FuzzParse feeds arbitrary bytes to the loader. It must return an error or
// a model, never panic, and a model it returns must survive Validate,
// TopoOrder and Marshal without panicking.
func FuzzParse(f *testing.F) {
	// Small seeds only: the fuzzer minimizes every new input it finds, and
	// a seed of hundreds of kilobytes makes that take minutes.
	b, err := os.ReadFile(sharedModel(f, "lora-inputs-ort"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add(b[:len(b)/3])
	f.Add([]byte{0x08, 0x07, 0x3a, 0x00})
	f.Add([]byte("\x3a\x06\x0a\x04\x0a\x00\x12\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := graph.Parse(b, t.TempDir())
		if err != nil {
			return
		}
		_ = m.Validate()
		_, _ = m.TopoOrder()
		for _, init := range m.Graph().Initializer {
			_, _ = m.TensorBytes(init)
		}
		_, _ = m.Marshal()
		m.Close()
	})
}

// TestHugeShapeIsAnError checks that a shape whose byte size overflows is
// refused, not sliced.
func TestHugeShapeIsAnError(t *testing.T) {
	m := graph.New(nil2(), "")
	big := graph.NewInt64Tensor("x", []int64{1}, []int64{1})
	big.Dims = []int64{1 << 40, 1 << 40}
	if _, err := m.TensorBytes(big); err == nil {
		t.Fatal("got no error for a shape of 2^80 elements")
	}
}
