package runtime_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
	rt "github.com/peftonnx/peftonnx/runtime"
)

func TestOptionsReject(t *testing.T) {
	requireORT(t)
	b := addModel(t, 2)
	tests := []struct {
		opt  rt.Option
		want string
	}{
		{rt.WithIntraOpThreads(-1), "WithIntraOpThreads: n must be from 0 to 1024, got -1"},
		{rt.WithInterOpThreads(-2), "WithInterOpThreads: n must be from 0 to 1024, got -2"},
		// 100000 threads made ONNX Runtime segfault creating its pool
		// (issue 16 C3).
		{rt.WithIntraOpThreads(100000), "WithIntraOpThreads: n must be from 0 to 1024, got 100000"},
		{rt.WithInterOpThreads(100000), "WithInterOpThreads: n must be from 0 to 1024, got 100000"},
		{rt.WithCUDA(-1), "WithCUDA: device id must be >= 0"},
		{rt.WithDevice("tpu"), `unknown device "tpu"`},
		{rt.WithDevice("cuda:x"), `bad device "cuda:x"`},
		{rt.WithOptimizationLevel(7), "unknown level 7"},
		{rt.WithProfiling(""), "empty file prefix"},
		{rt.WithLibrary(""), "empty path"},
		{rt.WithConfigEntry("", "1"), "empty key"},
	}
	for i, tc := range tests {
		_, err := rt.NewSessionFromBytes(b, tc.opt)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "runtime: ") {
			t.Errorf("test %d: got %v, want an error containing %q", i, err, tc.want)
		}
	}
}

func TestOptionsApply(t *testing.T) {
	requireORT(t)
	b := addModel(t, 3)
	for i, opts := range [][]rt.Option{
		{rt.WithIntraOpThreads(1), rt.WithInterOpThreads(1)},
		{rt.WithIntraOpThreads(2), rt.WithInterOpThreads(2)},
		{rt.WithOptimizationLevel(rt.OptimizeNone)},
		{rt.WithOptimizationLevel(rt.OptimizeBasic), rt.WithCPU()},
		{rt.WithDevice("cpu"), rt.WithConfigEntry("session.intra_op.allow_spinning", "0")},
		{rt.WithMemoryArena(false), rt.WithMemoryPattern(false)},
		{rt.WithMemoryArena(true), rt.WithMemoryPattern(true)},
		{rt.WithPrepacking(false)},
		{rt.WithSharedArena(true)},
		{rt.WithSharedArena(true), rt.WithMemoryArena(false)},
	} {
		s := mustSession(t, b, opts...)
		out, err := s.Run(map[string]*rt.Tensor{"x": must(rt.NewFloat32([]int64{1, 3}, []float32{1, 2, 3}))}, nil)
		if err != nil {
			t.Fatalf("options %d: %v", i, err)
		}
		if got, want := out["y"].Float32(), []float32{2, 4, 6}; !slices.Equal(got, want) {
			t.Errorf("options %d: y = %v, want %v", i, got, want)
		}
	}
	if _, err := rt.NewSessionFromBytes(b, rt.WithConfigEntry("session.no_such_key", "x")); err != nil {
		// ONNX Runtime accepts unknown keys; a failure here would be news.
		t.Logf("unknown config key: %v", err)
	}
}

func TestProfiling(t *testing.T) {
	requireORT(t)
	prefix := filepath.Join(t.TempDir(), "trace")
	s, err := rt.NewSessionFromBytes(addModel(t, 2), rt.WithProfiling(prefix))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Run(map[string]*rt.Tensor{"x": must(rt.NewFloat32([]int64{1, 2}, []float32{1, 2}))}, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(prefix + "*.json")
	if len(files) != 1 {
		t.Fatalf("profile files %v, want one %s_*.json", files, prefix)
	}
	if b, _ := os.ReadFile(files[0]); !strings.Contains(string(b), `"name"`) {
		t.Errorf("profile %s does not look like a trace", files[0])
	}
}

// TestCUDA runs a model on CUDA where the library has it, and otherwise
// checks the error that says it has not.
func TestCUDA(t *testing.T) {
	requireORT(t)
	b := matMulAddModel(t, dtype.Float32)
	s, err := rt.NewSessionFromBytes(b, rt.WithCUDA(0))
	if errors.Is(err, rt.ErrCUDAUnavailable) {
		want := "runtime: CUDA provider not available in " + rt.LibraryPath() + ": "
		if !strings.HasPrefix(err.Error(), want) {
			t.Errorf("error %q does not start with %q", err, want)
		}
		t.Skipf("CUDA not available: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	x := must(rt.NewFloat32([]int64{2, 3}, []float32{1, 2, 3, 4, 5, 6}))
	w := must(rt.NewFloat32([]int64{3, 2}, []float32{1, 0, 0, 1, 1, 1}))
	out, err := s.Run(map[string]*rt.Tensor{"x": x, "w": w}, []string{"y"})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := out["y"].Float32(), []float32{4, 5, 10, 11}; !slices.Equal(got, want) {
		t.Errorf("y = %v, want %v", got, want)
	}
}

func TestWithDevice(t *testing.T) {
	requireORT(t)
	b := addModel(t, 1)
	for _, spec := range []string{"cuda", "CUDA:1", "gpu"} {
		_, err := rt.NewSessionFromBytes(b, rt.WithDevice(spec))
		if err != nil && !errors.Is(err, rt.ErrCUDAUnavailable) {
			t.Errorf("WithDevice(%q): got %v, want success or ErrCUDAUnavailable", spec, err)
		}
	}
}
