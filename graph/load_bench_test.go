package graph_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
)

// bigModel is a chain of 30 float32 MatMuls of 2048×2048 (≈503 MB of
// weights), saved once per test binary with external data.
var bigModel struct {
	once sync.Once
	dir  string
	path string
	err  error
}

func bigModelPath(b *testing.B) string {
	bigModel.once.Do(func() {
		bigModel.dir, bigModel.err = os.MkdirTemp("", "peftonnx-bigmodel")
		if bigModel.err != nil {
			return
		}
		const n, layers = 2048, 30
		m := graph.New(nil2(), "")
		m.AddInput(graph.SymbolicTensorInfo("x0", dtype.Float32, []graph.Dim{graph.DimParam("batch"), graph.DimValue(n)}))
		vals := make([]float32, n*n)
		for l := 0; l < layers; l++ {
			for i := range vals {
				vals[i] = float32((i*7+l)%13) * 1e-3
			}
			w := fmt.Sprintf("model.layers.%d.proj.weight", l)
			m.AddInitializer(graph.NewFloat32Tensor(w, dtype.Float32, []int64{n, n}, vals))
			m.NewNode("MatMul", fmt.Sprintf("/model/layers.%d/proj/MatMul", l),
				[]string{fmt.Sprintf("x%d", l), w}, []string{fmt.Sprintf("x%d", l+1)})
		}
		m.AddOutput(graph.SymbolicTensorInfo(fmt.Sprintf("x%d", layers), dtype.Float32, []graph.Dim{graph.DimParam("batch"), graph.DimValue(n)}))
		bigModel.path = filepath.Join(bigModel.dir, "model.onnx")
		bigModel.err = m.Save(bigModel.path, graph.SaveOptions{ExternalData: true})
	})
	if bigModel.err != nil {
		b.Fatal(bigModel.err)
	}
	return bigModel.path
}

func TestMain(m *testing.M) {
	if p := os.Getenv("PEFTONNX_LOAD_CHILD"); p != "" {
		os.Exit(loadChild(p, os.Getenv("PEFTONNX_LOAD_TOUCH") == "1"))
	}
	code := m.Run()
	if bigModel.dir != "" {
		os.RemoveAll(bigModel.dir)
	}
	os.Exit(code)
}

// loadChild loads a model (and, with touch, reads every weight byte) in a
// process of its own, so that the parent can read its peak RSS.
func loadChild(path string, touch bool) int {
	m, err := graph.Load(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	var sum byte
	if touch {
		for _, t := range m.Graph().Initializer {
			b, err := m.TensorBytes(t)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			for i := 0; i < len(b); i += 4096 {
				sum += b[i]
			}
		}
	}
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// VmHWM is this process's peak resident set, in kB.
	for _, line := range strings.Split(string(status), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			fmt.Println(strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(line, "VmHWM:"), "kB")))
		}
	}
	fmt.Fprintln(os.Stderr, "checksum", sum)
	return 0
}

// BenchmarkLoadExternal500MB measures Load of a model with ≈503 MB of
// external weights, and reports the peak RSS of a separate process that
// loads it (peak-MB) and that loads it and reads every weight (touch-MB),
// beside the size on disk (disk-MB).
func BenchmarkLoadExternal500MB(b *testing.B) {
	path := bigModelPath(b)
	fi, err := os.Stat(path + ".data")
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		m, err := graph.Load(path)
		if err != nil {
			b.Fatal(err)
		}
		m.Close()
	}
	b.StopTimer()
	b.ReportMetric(float64(fi.Size())/(1<<20), "disk-MB")
	b.ReportMetric(childPeakMB(b, path, false), "peak-MB")
	b.ReportMetric(childPeakMB(b, path, true), "touch-MB")
}

func childPeakMB(b *testing.B, path string, touch bool) float64 {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "PEFTONNX_LOAD_CHILD="+path)
	if touch {
		cmd.Env = append(cmd.Env, "PEFTONNX_LOAD_TOUCH=1")
	}
	out, err := cmd.Output()
	if err != nil {
		b.Fatalf("child load: %v: %s", err, out)
	}
	// The child reports its own VmHWM: rusage would count the parent's
	// memory too, which the child shares until exec.
	kb, err := strconv.ParseFloat(strings.TrimSpace(string(out)), 64)
	if err != nil {
		b.Fatalf("child load: bad report %q", out)
	}
	return kb / 1024
}

// BenchmarkSaveExternal500MB measures Save of the same model to a fresh
// external data file.
func BenchmarkSaveExternal500MB(b *testing.B) {
	path := bigModelPath(b)
	m, err := graph.Load(path)
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	out := filepath.Join(b.TempDir(), "copy.onnx")
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := m.Save(out, graph.SaveOptions{ExternalData: true}); err != nil {
			b.Fatal(err)
		}
	}
}
