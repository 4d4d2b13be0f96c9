package runtime_test

import (
	"errors"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
	rt "github.com/peftonnx/peftonnx/runtime"
)

// stderrOf runs f with the process's standard error (file descriptor 2,
// where ONNX Runtime's C++ logger writes) sent to a file, and returns
// what was written there.
func stderrOf(t *testing.T, f func()) string {
	t.Helper()
	tmp, err := os.CreateTemp(t.TempDir(), "stderr")
	if err != nil {
		t.Fatal(err)
	}
	defer tmp.Close()
	saved, err := syscall.Dup(2)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Dup2(int(tmp.Fd()), 2); err != nil {
		t.Fatal(err)
	}
	f()
	if err := syscall.Dup2(saved, 2); err != nil {
		t.Fatal(err)
	}
	syscall.Close(saved)
	b, err := os.ReadFile(tmp.Name())
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestORTLogsNothing makes a MatMul fail inside ONNX Runtime (issue 16,
// E10): the error comes back, and ONNX Runtime prints nothing of its own
// to standard error, so a command's one-line error is the only line.
func TestORTLogsNothing(t *testing.T) {
	requireORT(t)
	if os.Getenv(rt.LogLevelEnv) != "" {
		t.Skipf("%s is set", rt.LogLevelEnv)
	}
	g := &onnxpb.GraphProto{
		Input:  []*onnxpb.ValueInfoProto{tensorInfo("x", dtype.Float32, "a", "b"), tensorInfo("w", dtype.Float32, "c", "d")},
		Output: []*onnxpb.ValueInfoProto{tensorInfo("y", dtype.Float32, "a", "d")},
		Node:   []*onnxpb.NodeProto{node("MatMul", []string{"x", "w"}, []string{"y"})},
	}
	s := mustSession(t, marshalModel(t, g, 8, 17))
	x := must(rt.NewFloat32([]int64{1, 3}, make([]float32, 3)))
	w := must(rt.NewFloat32([]int64{4, 2}, make([]float32, 8)))
	var runErr error
	logged := stderrOf(t, func() { _, runErr = s.Run(map[string]*rt.Tensor{"x": x, "w": w}, nil) })
	if runErr == nil || !strings.Contains(runErr.Error(), "MatMul") {
		t.Fatalf("got error %v, want ONNX Runtime's MatMul failure", runErr)
	}
	if logged != "" {
		t.Errorf("ONNX Runtime printed %q", logged)
	}
}

// TestOutOfMemory runs a ConstantOfShape of 2^46 floats, more than any
// address space (issue 16, E10): ErrOutOfMemory, with a message that says
// so and what was being done, instead of ONNX Runtime's allocator text
// alone (or a bare std::bad_alloc).
func TestOutOfMemory(t *testing.T) {
	requireORT(t)
	g := &onnxpb.GraphProto{
		Input:  []*onnxpb.ValueInfoProto{tensorInfo("s", dtype.Int64, 1)},
		Output: []*onnxpb.ValueInfoProto{tensorInfo("y", dtype.Float32, "n")},
		Node:   []*onnxpb.NodeProto{node("ConstantOfShape", []string{"s"}, []string{"y"})},
	}
	s := mustSession(t, marshalModel(t, g, 8, 17))
	_, err := s.Run(map[string]*rt.Tensor{"s": must(rt.NewInt64([]int64{1}, []int64{1 << 46}))}, nil)
	if !errors.Is(err, rt.ErrOutOfMemory) || !strings.Contains(err.Error(), "out of memory while running the model") {
		t.Errorf("got %v, want ErrOutOfMemory", err)
	}
}
