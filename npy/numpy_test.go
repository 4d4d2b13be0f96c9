package npy

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
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
	t.Skip("no python3 with numpy here (Debian: apt-get install python3-numpy); skipping the check that numpy reads our files")
	return ""
}

// TestNumpyReadsOurFiles writes arrays of every dtype and has numpy.load
// read them back.
func TestNumpyReadsOurFiles(t *testing.T) {
	py := findNumpy(t)
	dir := t.TempDir()
	cases := []struct {
		name string
		a    *Array
		want string // what the script prints: dtype, shape, values
	}{
		{"f4", must(New([]int64{2, 3}, []float32{0, 0.25, 0.5, 0.75, 1, -1.5})), "float32 (2, 3) [0.0, 0.25, 0.5, 0.75, 1.0, -1.5]"},
		{"f2", must(NewFloat16([]int64{2}, []uint16{0x3c00, 0xc000})), "float16 (2,) [1.0, -2.0]"},
		{"f8", must(New([]int64{}, []float64{3.5})), "float64 () [3.5]"},
		{"i8", must(New([]int64{1, 3}, []int64{-1 << 40, 0, 7})), "int64 (1, 3) [-1099511627776, 0, 7]"},
		{"i4", must(New([]int64{1}, []int32{-5})), "int32 (1,) [-5]"},
		{"i1", must(New([]int64{2}, []int8{-128, 127})), "int8 (2,) [-128, 127]"},
		{"u1", must(New([]int64{2}, []uint8{0, 255})), "uint8 (2,) [0, 255]"},
		{"i2", must(New([]int64{2}, []int16{-32768, 7})), "int16 (2,) [-32768, 7]"},
		{"u2", must(New([]int64{1}, []uint16{65535})), "uint16 (1,) [65535]"},
		{"u4", must(New([]int64{1}, []uint32{4294967295})), "uint32 (1,) [4294967295]"},
		{"u8", must(New([]int64{1}, []uint64{1 << 63})), "uint64 (1,) [9223372036854775808]"},
		{"b1", must(New([]int64{2, 1}, []bool{true, false})), "bool (2, 1) [True, False]"},
		{"empty", must(New([]int64{0, 4}, []float32{})), "float32 (0, 4) []"},
	}
	const script = "import sys, numpy as np\nfor p in sys.argv[1:]:\n    a = np.load(p)\n    print(a.dtype, a.shape, a.ravel().tolist())\n"
	args := []string{"-c", script}
	for _, c := range cases {
		path := filepath.Join(dir, c.name+".npy")
		if err := WriteFile(path, c.a); err != nil {
			t.Fatal(err)
		}
		args = append(args, path)
	}
	out, err := exec.Command(py, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("numpy failed: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != len(cases) {
		t.Fatalf("got %d lines from numpy, want %d:\n%s", len(lines), len(cases), out)
	}
	for i, c := range cases {
		if lines[i] != c.want {
			t.Errorf("%s: numpy read %q, want %q", c.name, lines[i], c.want)
		}
	}
}
