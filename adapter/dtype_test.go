package adapter

import (
	"bytes"
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
)

// TestUndefinedIsFloat32 checks that a tensor or config that names no
// element type is written as float32, as before package dtype, when the
// zero value of the adapter's own type was float32.
func TestUndefinedIsFloat32(t *testing.T) {
	tensor := &Tensor{Shape: []int64{2}, Data: []float32{1, -2}}
	st, err := EncodeSafetensors(map[string]*Tensor{"w": tensor}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(st, []byte(`"w":{"dtype":"F32","shape":[2]`)) {
		t.Errorf("safetensors header of a tensor without dtype: %q, want F32", st)
	}
	p, err := NewONNXParam("w", tensor)
	if err != nil {
		t.Fatal(err)
	}
	if p.DataType != dtype.Float32 || len(p.RawData) != 8 {
		t.Errorf("onnx_adapter parameter: data_type %d with %d bytes, want 1 with 8", p.DataType, len(p.RawData))
	}
	lora := LoRAConfig{R: 2, Alpha: 4, TargetModules: []string{"q"}}
	if err := lora.Validate(); err != nil {
		t.Errorf("LoRA config without dtype: %v", err)
	}
	prefix := PrefixConfig{NumPrefixTokens: 2}
	for name, write := range map[string]func() ([]byte, error){
		"lora":   func() ([]byte, error) { return loraConfigJSON(&lora, nil, "") },
		"prefix": func() ([]byte, error) { return prefixConfigJSON(&prefix, "") },
	} {
		b, err := write()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !bytes.Contains(b, []byte(`"dtype": "float32"`)) {
			t.Errorf("%s config without dtype written as\n%s\nwant \"dtype\": \"float32\"", name, b)
		}
	}
}
