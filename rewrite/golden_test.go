package rewrite

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/adapter"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// graphText describes m's graph one line per input, initializer, node and
// output, for golden files.
func graphText(m *graph.Model) string {
	var b strings.Builder
	g := m.Graph()
	for _, v := range g.Input {
		dt, dims, _ := graph.ValueShape(v)
		fmt.Fprintf(&b, "input %s %s %v\n", v.Name, dt, dims)
	}
	for _, t := range g.Initializer {
		fmt.Fprintf(&b, "init %s %s %v\n", t.Name, graph.TypeOf(t), t.Dims)
	}
	for _, n := range g.Node {
		var attrs []string
		for _, a := range n.Attribute {
			switch a.Type {
			case onnxpb.AttributeProto_INT:
				attrs = append(attrs, fmt.Sprintf("%s=%d", a.Name, a.I))
			case onnxpb.AttributeProto_INTS:
				attrs = append(attrs, fmt.Sprintf("%s=%v", a.Name, a.Ints))
			case onnxpb.AttributeProto_FLOAT:
				attrs = append(attrs, fmt.Sprintf("%s=%g", a.Name, a.F))
			}
		}
		fmt.Fprintf(&b, "node %s %q (%s) -> (%s) %s\n", n.OpType, n.Name, strings.Join(n.Input, ", "), strings.Join(n.Output, ", "), strings.Join(attrs, " "))
	}
	for _, v := range g.Output {
		fmt.Fprintf(&b, "output %s\n", v.Name)
	}
	return b.String()
}

// TestGolden compares the graphs that injection builds with golden files:
// run with -update to rewrite them after a deliberate change.
func TestGolden(t *testing.T) {
	plain := layerCases[1] // MatMul read by a Relu
	fused := layerCases[7]
	tests := []struct {
		name   string
		tc     layerCase
		opset  int64
		mutate func(*adapter.LoRAConfig)
		opts   []Option
	}{
		{"dropout-opset17", plain, 17, func(c *adapter.LoRAConfig) { c.Dropout = 0.1 }, nil},
		{"dropout-opset11", plain, 11, func(c *adapter.LoRAConfig) { c.Dropout = 0.1 }, nil},
		{"graph-output-fp16", layerCases[5], 17, nil, nil},
		{"fused-qkv", fused, 17, nil, nil},
		{"as-inputs", fused, 17, nil, []Option{AsInputs()}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, _, _ := layerModel(t, tc.tc, newRand(1))
			m.Proto.OpsetImport[0].Version = tc.opset
			cfg := layerAdapter(tc.tc, newRand(2)).LoRA
			if tc.mutate != nil {
				tc.mutate(cfg)
			}
			if _, _, err := InjectLoRA(m, *cfg, tc.opts...); err != nil {
				t.Fatal(err)
			}
			got := graphText(m)
			path := filepath.Join("testdata", tc.name+".golden")
			if *update {
				if err := os.MkdirAll("testdata", 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("graph differs from %s (-want +got):\n%s", path, lineDiff(string(want), got))
			}
		})
	}
}

// lineDiff lists the lines that only want or only got has.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	inW, inG := map[string]bool{}, map[string]bool{}
	for _, l := range w {
		inW[l] = true
	}
	for _, l := range g {
		inG[l] = true
	}
	var b strings.Builder
	for _, l := range w {
		if !inG[l] {
			b.WriteString("-" + l + "\n")
		}
	}
	for _, l := range g {
		if !inW[l] {
			b.WriteString("+" + l + "\n")
		}
	}
	return b.String()
}
