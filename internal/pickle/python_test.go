package pickle

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"github.com/peftonnx/peftonnx/npy"
)

// findNumpy returns a Python interpreter that can import numpy, or skips
// the test.
func findNumpy(t *testing.T) string {
	t.Helper()
	for _, py := range []string{"python3", "/usr/bin/python3"} {
		if err := exec.Command(py, "-c", "import numpy").Run(); err == nil {
			return py
		}
	}
	t.Skip("no python3 with numpy here (Debian: apt-get install python3-numpy, or scripts/install-test-deps.sh); skipping the checks against Python's pickle")
	return ""
}

// TestDecodePythonFiles has CPython pickle.dump state dicts at every
// protocol it writes from 2 on, as a dict and as an OrderedDict, with all
// the dtypes, orders and sizes of gen_state_dict.py --full, and checks that
// Decode gives the names, shapes, dtypes and elements Python wrote down.
func TestDecodePythonFiles(t *testing.T) {
	py := findNumpy(t)
	dir := t.TempDir()
	for _, protocol := range []int{2, 3, 4, 5} {
		for _, ordered := range []bool{false, true} {
			name := fmt.Sprintf("p%d", protocol)
			args := []string{filepath.Join("testdata", "gen_state_dict.py"), "--full", "--protocol", fmt.Sprint(protocol)}
			if ordered {
				name += "-ordered"
				args = append(args, "--ordered")
			}
			t.Run(name, func(t *testing.T) {
				pkl, man := filepath.Join(dir, name+".pkl"), filepath.Join(dir, name+".json")
				if out, err := exec.Command(py, append(args, pkl, man)...).CombinedOutput(); err != nil {
					t.Fatalf("gen_state_dict.py: %v\n%s", err, out)
				}
				d, err := ReadFile(pkl)
				if err != nil {
					t.Fatal(err)
				}
				checkManifest(t, name, d, readManifest(t, man))
				checkSmallValues(t, d)
				a, _ := d.Get("shared.a")
				b, _ := d.Get("shared.b")
				if a == nil || a != b {
					t.Errorf("shared.a and shared.b: got %p and %p, want the same array (one object in Python)", a, b)
				}
			})
		}
	}
}

// pythonManifest is a Python program that pickle.loads each file it is
// given, checks that it is a plain dict, and prints the manifest of each,
// one JSON object per line, computed as gen_state_dict.py does. pickletools
// first checks the opcodes' use of the stack and memo.
const pythonManifest = `
import hashlib, io, json, pickle, pickletools, sys
import numpy as np
for path in sys.argv[1:]:
    with open(path, "rb") as f:
        data = f.read()
    pickletools.dis(data, out=io.StringIO())  # checks the stack and memo use
    d = pickle.loads(data)
    assert type(d) is dict, type(d)
    out = {"type": type(d).__name__, "keys": list(d), "arrays": {}, "other": {}}
    for k, v in d.items():
        if isinstance(v, np.ndarray):
            assert v.flags["C_CONTIGUOUS"] and v.dtype.byteorder in "=|<", (k, v.flags, v.dtype.byteorder)
            le = np.ascontiguousarray(v.astype(v.dtype.newbyteorder("<")))
            out["arrays"][k] = {"dtype": v.dtype.name, "shape": list(v.shape),
                                "sha256": hashlib.sha256(le.tobytes()).hexdigest()}
        else:
            out["other"][k] = repr(v)
    print(json.dumps(out))
`

// TestPythonReadsOurs encodes a dict of arrays of every dtype and of plain
// values at protocols 2 and 4, and has CPython's pickle.load read them: it
// must get a dict with the same keys, arrays with the same dtype, shape and
// elements, and the same plain values.
func TestPythonReadsOurs(t *testing.T) {
	py := findNumpy(t)
	d := NewDict()
	mustNew := func(a *npy.Array, err error) *npy.Array {
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	d.Set("model.layers.0.mlp.up_proj.lora_A", mustNew(npy.New([]int64{3, 2}, []float32{0, 0.5, -1, 2, 1e-8, 3.25})))
	d.Set("f16", mustNew(npy.NewFloat16([]int64{2}, []uint16{0x3c00, 0xc000})))
	d.Set("f64", mustNew(npy.New([]int64{}, []float64{-0.125})))
	d.Set("i8", mustNew(npy.New([]int64{2}, []int8{-128, 127})))
	d.Set("i16", mustNew(npy.New([]int64{1}, []int16{-300})))
	d.Set("i32", mustNew(npy.New([]int64{2, 1}, []int32{-1 << 31, 1<<31 - 1})))
	d.Set("i64", mustNew(npy.New([]int64{2}, []int64{-1 << 62, 1 << 40})))
	d.Set("u8", mustNew(npy.New([]int64{3}, []uint8{0, 128, 255})))
	d.Set("u16", mustNew(npy.New([]int64{2}, []uint16{0x3f80, 0xc020})))
	d.Set("u32", mustNew(npy.New([]int64{1}, []uint32{1<<32 - 1})))
	d.Set("u64", mustNew(npy.New([]int64{1}, []uint64{1 << 63})))
	d.Set("bool", mustNew(npy.New([]int64{1, 2}, []bool{true, false})))
	d.Set("empty", mustNew(npy.New([]int64{0, 5}, []float32{})))
	large := make([]float32, 40000) // 160 KB: outside protocol 4's frames
	for i := range large {
		large[i] = float32(i) / 7
	}
	d.Set("large", mustNew(npy.New([]int64{200, 200}, large)))
	for i := range 1200 { // more than one SETITEMS batch, and LONG_BINPUT
		d.Set(fmt.Sprintf("many.%04d", i), mustNew(npy.New([]int64{1}, []int32{int32(i)})))
	}
	names := NewDict()
	names.Set("model.layers.0.mlp.up_proj.lora_A", "linear_3.w_0")
	d.Set("StructuredToParameterName@@", names)
	d.Set("meta", NewList(int64(0), int64(255), int64(256), int64(65536), int64(-1), int64(1<<31), int64(-1<<63), 1,
		0.1, nil, true, false, "ünïcode", []byte{}, []byte{0, 0x80, 0xff}, NewTuple(), NewTuple(int64(1)), NewTuple(1, 2, 3, 4), NewList()))

	dir := t.TempDir()
	var paths []string
	for _, protocol := range []int{2, 4} {
		b, err := Encode(d, protocol)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, fmt.Sprintf("ours.p%d.pkl", protocol))
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	out, err := exec.Command(py, append([]string{"-c", pythonManifest}, paths...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("Python could not read our pickles: %v\n%s", err, out)
	}
	dec := json.NewDecoder(bytes.NewReader(out))
	want := manifestOf(d)
	wantOther := map[string]string{
		"StructuredToParameterName@@": `{'model.layers.0.mlp.up_proj.lora_A': 'linear_3.w_0'}`,
		"meta":                        `[0, 255, 256, 65536, -1, 2147483648, -9223372036854775808, 1, 0.1, None, True, False, 'ünïcode', b'', b'\x00\x80\xff', (), (1,), (1, 2, 3, 4), []]`,
	}
	for _, p := range paths {
		var got struct {
			manifest
			Other map[string]string `json:"other"`
		}
		if err := dec.Decode(&got); err != nil {
			t.Fatalf("%s: reading Python's output: %v\n%s", p, err, out)
		}
		name := filepath.Base(p)
		if !slices.Equal(got.Keys, want.Keys) {
			t.Errorf("%s: Python read keys %q, want %q", name, got.Keys, want.Keys)
		}
		for k, w := range want.Arrays {
			if g := got.Arrays[k]; g.DType != w.DType || !slices.Equal(g.Shape, w.Shape) || g.SHA256 != w.SHA256 {
				t.Errorf("%s: Python read %q as %s %v sha256 %s, want %s %v sha256 %s", name, k, g.DType, g.Shape, g.SHA256, w.DType, w.Shape, w.SHA256)
			}
		}
		for k, w := range wantOther {
			if g := got.Other[k]; g != w {
				t.Errorf("%s: Python read %q as %s, want %s", name, k, g, w)
			}
		}
	}
}
