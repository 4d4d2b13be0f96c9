package rewrite

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
	"github.com/peftonnx/peftonnx/quant"
	rt "github.com/peftonnx/peftonnx/runtime"
)

// openChildEnv names the model that TestDoRAInt4OpenChild opens, in the
// child process that BenchmarkDoRAInt4Open starts.
const openChildEnv = "PEFTONNX_NBITS_OPEN_CHILD"

// BenchmarkDoRAInt4Open measures what opening an ONNX Runtime session
// costs for one 8192×8192 int4 layer (blocks of 32, zero points,
// accuracy_level 4; 32 MiB packed, weights in an external data file that
// ONNX Runtime maps), plain and with DoRA (rank 8): the peak resident set
// and the anonymous memory of a process that opens the session and does
// nothing else, which is where ONNX Runtime's pre-packed weights go.
//
//	go test ./rewrite -run '^$' -bench DoRAInt4Open -benchtime 1x
func BenchmarkDoRAInt4Open(b *testing.B) {
	const k, n = 8192, 8192
	rng := rand.New(rand.NewPCG(8, 8))
	vals := make([]float32, k*n)
	for i := range vals {
		vals[i] = float32(rng.NormFloat64() / 90)
	}
	w, err := quant.Quantize(vals, k, n, quant.Options{Bits: 4, BlockSize: 32})
	if err != nil {
		b.Fatal(err)
	}
	vals = nil
	names := quant.BuilderNames("layer.proj.MatMul.weight", 4)
	ts, err := w.Tensors(names)
	if err != nil {
		b.Fatal(err)
	}
	node, err := w.Node(names, quant.NodeOptions{Name: quant.BuilderNodeName("/layer/proj/MatMul", 4), A: "x", Y: "y", AccuracyLevel: 4})
	if err != nil {
		b.Fatal(err)
	}
	g := &onnxpb.GraphProto{Name: "int4_layer", Initializer: ts, Node: []*onnxpb.NodeProto{node}}
	g.Input = []*onnxpb.ValueInfoProto{graph.SymbolicTensorInfo("x", dtype.Float32, []graph.Dim{graph.DimParam("rows"), graph.DimValue(k)})}
	g.Output = []*onnxpb.ValueInfoProto{graph.SymbolicTensorInfo("y", dtype.Float32, []graph.Dim{graph.DimParam("rows"), graph.DimValue(n)})}
	base := graph.New(&onnxpb.ModelProto{IrVersion: 8, Graph: g}, "")
	base.SetOpset("", 17)
	base.SetOpset(quant.Domain, 1)
	dora := base.Clone()
	cfg := config(8, 16, "layer.proj")
	cfg.UseDoRA = true
	if _, _, err := InjectLoRA(dora, cfg); err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	var first [2]float64
	for i, c := range []struct {
		name string
		m    *graph.Model
	}{{"int4", base}, {"int4-dora", dora}} {
		path := filepath.Join(dir, c.name+".onnx")
		if err := c.m.Save(path, graph.SaveOptions{ExternalData: true}); err != nil {
			b.Fatal(err)
		}
		cmd := exec.Command(os.Args[0], "-test.run=^TestDoRAInt4OpenChild$")
		cmd.Env = append(os.Environ(), openChildEnv+"="+path)
		out, err := cmd.Output()
		if err != nil {
			b.Fatalf("%s: child: %v: %s", c.name, err, out)
		}
		var peak, anon float64
		if _, err := fmt.Sscan(strings.TrimSpace(string(out)), &peak, &anon); err != nil {
			b.Fatalf("%s: child reports %q", c.name, out)
		}
		b.Logf("%s: session open, peak RSS %.0f MiB, anonymous %.0f MiB", c.name, peak, anon)
		b.ReportMetric(peak, c.name+"-peak-MiB")
		b.ReportMetric(anon, c.name+"-anon-MiB")
		if i == 0 {
			first = [2]float64{peak, anon}
		} else {
			b.Logf("DoRA adds %.0f MiB of peak RSS, %.0f MiB anonymous", peak-first[0], anon-first[1])
		}
	}
}

// TestDoRAInt4OpenChild is BenchmarkDoRAInt4Open's child: it opens a
// session on the model that openChildEnv names and prints its peak
// resident set and anonymous memory in MiB. It skips elsewhere.
func TestDoRAInt4OpenChild(t *testing.T) {
	path := os.Getenv(openChildEnv)
	if path == "" {
		t.Skip("the child of BenchmarkDoRAInt4Open")
	}
	s, err := rt.NewSession(path, rt.WithIntraOpThreads(1))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	field := func(key string) float64 {
		for _, line := range strings.Split(string(status), "\n") {
			if v, ok := strings.CutPrefix(line, key); ok {
				kb, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(v, "kB")), 64)
				return kb / 1024
			}
		}
		return 0
	}
	fmt.Println(field("VmHWM:"), field("RssAnon:"))
}
