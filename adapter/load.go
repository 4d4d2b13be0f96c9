package adapter

import (
	"os"
	"strings"
)

// ONNXAdapterExt is the file extension of ONNX Runtime adapter files.
const ONNXAdapterExt = ".onnx_adapter"

// Load reads an adapter from a directory (see LoadDir) or from an
// .onnx_adapter file (see ReadONNXAdapter and ONNXAdapterFile.ToAdapter).
func Load(path string) (*Adapter, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, errorf("%w", err)
	}
	if st.IsDir() {
		return LoadDir(path)
	}
	f, err := ReadONNXAdapter(path)
	if err != nil {
		return nil, err
	}
	a, err := f.ToAdapter(nil)
	if err != nil {
		return nil, inFile(err, path)
	}
	return a, nil
}

// Save writes a to path: as an .onnx_adapter file in LayoutORT when path
// ends in ".onnx_adapter" (see NewONNXAdapterFile), else as a HuggingFace
// PEFT directory (see SaveDir). Either way the write is atomic.
func Save(path string, a *Adapter) error {
	if !strings.HasSuffix(path, ONNXAdapterExt) {
		return SaveDir(path, a)
	}
	f, err := NewONNXAdapterFile(a)
	if err != nil {
		return inFile(err, path)
	}
	return WriteONNXAdapter(path, f)
}
