package models

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// graphText lists a model's interface, initializers and nodes, one a line:
// the layout that the golden files pin down.
func graphText(m *graph.Model) string {
	var sb strings.Builder
	g := m.Graph()
	fmt.Fprintf(&sb, "opset %d\n", m.Opset(""))
	for _, v := range g.Input {
		fmt.Fprintf(&sb, "input %s\n", valueText(v))
	}
	for _, v := range g.Output {
		fmt.Fprintf(&sb, "output %s\n", valueText(v))
	}
	for _, t := range g.Initializer {
		fmt.Fprintf(&sb, "weight %s %s %v\n", t.Name, graph.TypeOf(t), t.Dims)
	}
	for _, n := range g.Node {
		fmt.Fprintf(&sb, "node %s %s (%s) -> (%s)\n", n.Name, n.OpType, strings.Join(n.Input, ", "), strings.Join(n.Output, ", "))
	}
	return sb.String()
}

// valueText writes a tensor value as name, type and dims, a dynamic dim by
// its name.
func valueText(v *onnxpb.ValueInfoProto) string {
	tt := v.GetType().GetTensorType()
	var dims []string
	for _, d := range tt.GetShape().GetDim() {
		if p := d.GetDimParam(); p != "" {
			dims = append(dims, p)
		} else {
			dims = append(dims, fmt.Sprint(d.GetDimValue()))
		}
	}
	return fmt.Sprintf("%s %s [%s]", v.Name, dtype.Type(tt.GetElemType()), strings.Join(dims, " "))
}

func TestGolden(t *testing.T) {
	tests := []struct {
		file  string
		build func() (*graph.Model, error)
	}{
		{"llama_tiny.txt", func() (*graph.Model, error) { return Llama(LlamaTiny()) }},
		{"gpt2_tiny.txt", func() (*graph.Model, error) { return GPT2(GPT2Tiny()) }},
		{"bert_tiny.txt", func() (*graph.Model, error) { return BERT(BERTTiny()) }},
		{"llama_model_builder.txt", func() (*graph.Model, error) { return fusedLayouts[0].build(false) }},
		{"llama_model_builder_rotary_nodes.txt", func() (*graph.Model, error) { return fusedLayouts[1].build(false) }},
		{"gpt2_transformer_optimizer.txt", func() (*graph.Model, error) { return fusedLayouts[2].build(false) }},
		{"bert_transformer_optimizer.txt", func() (*graph.Model, error) { return fusedLayouts[3].build(false) }},
	}
	for _, tc := range tests {
		m, err := tc.build()
		if err != nil {
			t.Fatal(err)
		}
		got := graphText(m)
		path := filepath.Join("testdata", tc.file)
		if *update {
			if err := os.MkdirAll("testdata", 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run go test -update to create it)", err)
		}
		if got != string(want) {
			t.Errorf("%s: the graph changed (-want +got):\n%s", tc.file, lineDiff(string(want), got))
		}
	}
}

// lineDiff lists the lines only in want (-) and only in got (+).
func lineDiff(want, got string) string {
	count := map[string]int{}
	for _, l := range strings.Split(got, "\n") {
		count[l]++
	}
	var sb strings.Builder
	for _, l := range strings.Split(want, "\n") {
		if count[l] > 0 {
			count[l]--
			continue
		}
		fmt.Fprintf(&sb, "-%s\n", l)
	}
	seen := map[string]int{}
	for _, l := range strings.Split(want, "\n") {
		seen[l]++
	}
	for _, l := range strings.Split(got, "\n") {
		if seen[l] > 0 {
			seen[l]--
			continue
		}
		fmt.Fprintf(&sb, "+%s\n", l)
	}
	return sb.String()
}
