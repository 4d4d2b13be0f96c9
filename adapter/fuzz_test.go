package adapter

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzDecodeSafetensors feeds arbitrary bytes to the safetensors reader.
// It must return an error or tensors, never panic, and tensors it returns
// must encode and decode again to the same names and shapes.
func FuzzDecodeSafetensors(f *testing.F) {
	golden, err := os.ReadFile(filepath.Join("testdata", "small.safetensors"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(golden)
	f.Add(golden[:len(golden)-3])
	f.Add(rawSafetensors(`{"x":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}}`, make([]byte, 8)))
	f.Add(rawSafetensors(`{"__metadata__":{"a":"b"},"y":{"dtype":"BF16","shape":[0],"data_offsets":[0,0]}}`, nil))
	f.Add([]byte{2, 0, 0, 0, 0, 0, 0, 0, '{', '}'})
	f.Fuzz(func(t *testing.T, data []byte) {
		tensors, meta, err := DecodeSafetensors(data)
		if err != nil {
			return
		}
		enc, err := EncodeSafetensors(tensors, meta)
		if err != nil {
			t.Fatalf("decoded tensors do not encode: %v", err)
		}
		again, _, err := DecodeSafetensors(enc)
		if err != nil {
			t.Fatalf("re-encoded buffer does not decode: %v", err)
		}
		for name, x := range tensors {
			if y := again[name]; y == nil || !equalShape(x.Shape, y.Shape) || x.DType != y.DType {
				t.Fatalf("tensor %q changed on the second trip", name)
			}
		}
	})
}

// FuzzDecodeONNXAdapter feeds arbitrary bytes to the flatbuffer reader. It
// must return an error or a file, never panic, and a file it returns must
// encode and decode again to the same parameters.
func FuzzDecodeONNXAdapter(f *testing.F) {
	for _, name := range []string{"small.onnx_adapter", "fbref/ref_legacy.bin", "fbref/ref_ort_unaligned.bin"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		f.Add(b[:len(b)/2])
	}
	f.Add([]byte("\x0c\x00\x00\x00TORT\x00\x00\x00\x00\x04\x00\x04\x00\x04\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := DecodeONNXAdapter(data)
		if err != nil {
			return
		}
		enc, err := file.Encode()
		if err != nil {
			t.Fatalf("decoded file does not encode: %v", err)
		}
		again, err := DecodeONNXAdapter(enc)
		if err != nil {
			t.Fatalf("re-encoded file does not decode: %v", err)
		}
		if len(again.Params) != len(file.Params) || again.Layout != file.Layout || again.FormatVersion != file.FormatVersion {
			t.Fatalf("file changed on the second trip")
		}
		for i, p := range file.Params {
			q := again.Params[i]
			if p.Name != q.Name || !equalShape(p.Dims, q.Dims) || p.DataType != q.DataType || string(p.RawData) != string(q.RawData) {
				t.Fatalf("parameter %d changed on the second trip", i)
			}
		}
	})
}

// FuzzDecodePdparams feeds arbitrary bytes to the .pdparams reader. It
// must return an error or tensors, never panic, and tensors it returns
// must encode and decode again to the same names, shapes and dtypes.
func FuzzDecodePdparams(f *testing.F) {
	for _, name := range []string{"lora_paddle/lora_model_state.pdparams", "prefix_proj_paddle/prefix_model_state.pdparams"} {
		b, err := os.ReadFile(filepath.Join("testdata", "paddle", "p4", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		f.Add(b[:len(b)/3])
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		tensors, err := DecodePdparams(data)
		if err != nil {
			return
		}
		enc, err := EncodePdparams(tensors)
		if err != nil {
			t.Fatalf("decoded tensors do not encode: %v", err)
		}
		again, err := DecodePdparams(enc)
		if err != nil {
			t.Fatalf("re-encoded state dict does not decode: %v", err)
		}
		for name, x := range tensors {
			if y := again[name]; y == nil || !equalShape(x.Shape, y.Shape) || x.DType != y.DType {
				t.Fatalf("tensor %q changed on the second trip", name)
			}
		}
	})
}
