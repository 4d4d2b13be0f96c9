package autodiff

import (
	"bufio"
	"crypto/sha256"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
	"github.com/peftonnx/peftonnx/models"
)

// The training graphs that Build makes for the reference models of package
// models and for the real models in ../shared/models, pinned down by a
// digest of their listing in testdata/gradient_graphs.txt: a change to a
// rule, to the inferer or to the emitter that changes an emitted node, a
// name or a constant shows up here, and is either a mistake or a reason to
// run with -update (and say why in the commit).

var (
	update     = flag.Bool("update", false, "rewrite the golden files in testdata/")
	dumpGraphs = flag.String("dump-graphs", "", "write the listing of each graph of TestGradientGraphs into this folder, to diff")
)

const graphsGolden = "testdata/gradient_graphs.txt"

// graphListing writes a model one line per input, output, value info,
// initializer and node, in graph order, with every attribute and the bytes
// of every initializer of at most 4096 elements.
func graphListing(t *testing.T, m *graph.Model) string {
	t.Helper()
	var sb strings.Builder
	g := m.Graph()
	for _, o := range m.Proto.OpsetImport {
		fmt.Fprintf(&sb, "opset %q %d\n", o.Domain, o.Version)
	}
	for _, v := range g.Input {
		fmt.Fprintf(&sb, "input %s\n", valueListing(v))
	}
	for _, v := range g.Output {
		fmt.Fprintf(&sb, "output %s\n", valueListing(v))
	}
	for _, v := range g.ValueInfo {
		fmt.Fprintf(&sb, "value %s\n", valueListing(v))
	}
	for _, init := range g.Initializer {
		fmt.Fprintf(&sb, "init %s\n", tensorListing(t, m, init))
	}
	for _, n := range g.Node {
		fmt.Fprintf(&sb, "node %q %s:%s (%s) -> (%s)", n.Name, n.Domain, n.OpType, strings.Join(n.Input, ", "), strings.Join(n.Output, ", "))
		for _, a := range n.Attribute {
			fmt.Fprintf(&sb, " %s=%d/%v/%v/%v/%q", a.Name, a.Type, a.I, a.F, a.Ints, a.S)
			if len(a.Floats) > 0 {
				fmt.Fprintf(&sb, "/%v", a.Floats)
			}
			if a.T != nil {
				fmt.Fprintf(&sb, "/{%s}", tensorListing(t, m, a.T))
			}
		}
		sb.WriteString("\n")
	}
	return sb.String()
}

func valueListing(v *onnxpb.ValueInfoProto) string {
	tt := v.GetType().GetTensorType()
	if tt.GetShape() == nil {
		return fmt.Sprintf("%s %s unranked", v.Name, dtype.Type(tt.GetElemType()))
	}
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

func tensorListing(t *testing.T, m *graph.Model, tp *onnxpb.TensorProto) string {
	t.Helper()
	s := fmt.Sprintf("%s %s %v", tp.Name, graph.TypeOf(tp), tp.Dims)
	if graph.NumElements(tp.Dims) <= 4096 {
		b, err := m.TensorBytes(tp)
		if err != nil {
			t.Fatalf("tensor %q: %v", tp.Name, err)
		}
		s += fmt.Sprintf(" %x", sha256.Sum256(b))
	}
	return s
}

// graphCase is one training graph: a model, a loss added to it, the
// parameters and Build's options.
type graphCase struct {
	name   string
	model  func(t *testing.T) *graph.Model
	loss   func(m *graph.Model) string
	params []string
	opts   []Option
}

// sumLoss adds ReduceSum(y) to m.
func sumLoss(y string) func(m *graph.Model) string {
	return func(m *graph.Model) string {
		out := m.UniqueName("loss")
		m.AddNode(&onnxpb.NodeProto{OpType: "ReduceSum", Name: out, Input: []string{y}, Output: []string{out}, Attribute: []*onnxpb.AttributeProto{graph.AttrInt("keepdims", 0)}})
		return out
	}
}

// crossEntropyLoss adds the cross entropy of logits [B, S, vocab] against
// labels [B, S] to m: SoftmaxCrossEntropyLoss of the flattened rows, with
// ignore_index −100.
func crossEntropyLoss(logits, labels string, vocab int64) func(m *graph.Model) string {
	return func(m *graph.Model) string {
		c := func(name string, vs ...int64) string {
			m.AddInitializer(graph.NewInt64Tensor(name, []int64{int64(len(vs))}, vs))
			return name
		}
		rows := m.UniqueName("loss/rows")
		flat := m.UniqueName("loss/labels")
		out := m.UniqueName("loss")
		m.AddNode(&onnxpb.NodeProto{OpType: "Reshape", Name: rows, Input: []string{logits, c(m.UniqueName("loss/rows_shape"), -1, vocab)}, Output: []string{rows}})
		m.AddNode(&onnxpb.NodeProto{OpType: "Reshape", Name: flat, Input: []string{labels, c(m.UniqueName("loss/labels_shape"), -1)}, Output: []string{flat}})
		m.AddNode(&onnxpb.NodeProto{OpType: "SoftmaxCrossEntropyLoss", Domain: "", Name: out, Input: []string{rows, flat}, Output: []string{out},
			Attribute: []*onnxpb.AttributeProto{graph.AttrInt("ignore_index", -100)}})
		return out
	}
}

func builtModel(build func() (*graph.Model, error)) func(t *testing.T) *graph.Model {
	return func(t *testing.T) *graph.Model {
		m, err := build()
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
}

func sharedModel(rel string, float32 bool) func(t *testing.T) *graph.Model {
	return func(t *testing.T) *graph.Model {
		m := loadShared(t, rel)
		if float32 {
			toFloat32(t, m)
		}
		return m
	}
}

// distilbertWeights picks the parameters TestDistilBERT differentiates.
func distilbertWeights(m *graph.Model) []string {
	var ps []string
	for _, init := range m.Graph().Initializer {
		if graph.TypeOf(init).IsFloat() && len(init.Dims) == 2 && init.Dims[0] == 2 && init.Dims[1] == 2 {
			ps = append(ps, init.Name)
			break
		}
	}
	return append(ps, "distilbert.embeddings.LayerNorm.weight", "pre_classifier.bias")
}

func gradientGraphCases() []graphCase {
	gpt2Gemm := models.GPT2Tiny()
	gpt2Gemm.Gemm = true
	gpt2Decomposed := models.GPT2Tiny()
	gpt2Decomposed.DecomposeLayerNorm = true
	llama := builtModel(func() (*graph.Model, error) { return models.Llama(models.LlamaTiny()) })
	gpt2 := builtModel(func() (*graph.Model, error) { return models.GPT2(models.GPT2Tiny()) })
	llamaParams := []string{
		"model.layers.0.self_attn.q_proj.weight", "model.layers.1.self_attn.v_proj.weight",
		"model.layers.0.mlp.gate_proj.weight", "model.layers.1.input_layernorm.weight",
		"model.embed_tokens.weight", "past_key_values.0.key", "past_key_values.1.value"}
	gpt2Params := []string{
		"transformer.h.0.attn.c_attn.weight", "transformer.h.1.mlp.c_fc.bias",
		"transformer.h.0.ln_2.weight", "transformer.wpe.weight", "past_key_values.0.value"}
	tinyLlamaParams := []string{
		"model.layers.0.attn.q_proj.MatMul.weight", "model.layers.1.attn.v_proj.MatMul.weight",
		"model.layers.0.post_attention_layernorm.weight", "model.layers.1.mlp.up_proj.MatMul.weight",
		"past_key_values.0.key", "past_key_values.0.value"}
	cases := []graphCase{
		{name: "llama", model: llama, loss: sumLoss("logits"), params: llamaParams},
		{name: "llama_ce", model: llama, loss: crossEntropyLoss("logits", "input_ids", 32), params: llamaParams},
		{name: "llama_products", model: llama, loss: crossEntropyLoss("logits", "input_ids", 32), params: llamaParams, opts: []Option{WithRecomputeProducts(true)}},
		{name: "llama_norecompute", model: llama, loss: sumLoss("logits"), params: llamaParams, opts: []Option{WithRecompute(false)}},
		{name: "gpt2", model: gpt2, loss: sumLoss("logits"), params: gpt2Params},
		{name: "gpt2_ce", model: gpt2, loss: crossEntropyLoss("logits", "input_ids", 32), params: gpt2Params, opts: []Option{WithOutputs("logits")}},
		{name: "gpt2_products", model: gpt2, loss: sumLoss("logits"), params: gpt2Params, opts: []Option{WithRecomputeProducts(true)}},
		{name: "gpt2_gemm", model: builtModel(func() (*graph.Model, error) { return models.GPT2(gpt2Gemm) }), loss: sumLoss("logits"),
			params: []string{"transformer.h.0.attn.c_attn.weight", "transformer.h.1.mlp.c_proj.bias"}},
		{name: "gpt2_decomposed_layernorm", model: builtModel(func() (*graph.Model, error) { return models.GPT2(gpt2Decomposed) }), loss: sumLoss("logits"),
			params: []string{"transformer.h.0.ln_1.weight", "transformer.h.1.ln_2.bias", "transformer.h.0.attn.c_proj.weight"}},
		{name: "bert", model: builtModel(func() (*graph.Model, error) { return models.BERT(models.BERTTiny()) }), loss: sumLoss("logits"), params: []string{
			"bert.encoder.layer.0.attention.self.query.weight", "bert.encoder.layer.1.intermediate.dense.weight",
			"bert.embeddings.LayerNorm.weight", "bert.embeddings.word_embeddings.weight"}},
		{name: "shared/gpt2-past-torch16", model: sharedModel("gpt2-past-torch16/model.onnx", false), loss: sumLoss("last_state"),
			params: []string{"h.0.attn.c_attn.weight_resize", "h.3.mlp.c_fc.bias_resize", "h.11.ln_2.weight_resize", "ln_f.bias_resize"}},
		{name: "shared/gpt2-past-torch16_products", model: sharedModel("gpt2-past-torch16/model.onnx", false), loss: sumLoss("last_state"),
			params: []string{"h.0.attn.c_attn.weight_resize", "h.5.mlp.c_proj.weight_resize"}, opts: []Option{WithRecomputeProducts(true)}},
		{name: "shared/distilbert", model: sharedModel("distilbert-optimum/model.onnx", false), loss: sumLoss("logits")},
		{name: "shared/tiny-llama-fp16", model: sharedModel("tiny-llama-genai-fp16/model.onnx", false), loss: sumLoss("logits"), params: tinyLlamaParams},
		{name: "shared/tiny-llama-fp32", model: sharedModel("tiny-llama-genai-fp16/model.onnx", true), loss: sumLoss("logits"), params: tinyLlamaParams},
		{name: "shared/tiny-llama-fp32_products", model: sharedModel("tiny-llama-genai-fp16/model.onnx", true), loss: sumLoss("logits"),
			params: tinyLlamaParams[:4], opts: []Option{WithRecomputeProducts(true)}},
		{name: "shared/lora-inputs-ort", model: sharedModel("lora-inputs-ort/model.onnx", false)},
	}
	return cases
}

// readGraphsGolden reads name → digest line.
func readGraphsGolden(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	f, err := os.Open(graphsGolden)
	if err != nil {
		if *update && os.IsNotExist(err) {
			return out
		}
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, rest, _ := strings.Cut(line, " ")
		out[name] = rest
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestGradientGraphs(t *testing.T) {
	golden := readGraphsGolden(t)
	got := map[string]string{}
	for _, c := range gradientGraphCases() {
		t.Run(c.name, func(t *testing.T) {
			m := c.model(t)
			loss := ""
			if c.loss != nil {
				loss = c.loss(m)
			}
			params := c.params
			switch c.name {
			case "shared/distilbert":
				params = distilbertWeights(m)
			case "shared/lora-inputs-ort":
				loss = sumLoss(m.Graph().Output[0].Name)(m)
				for _, in := range m.Graph().Input {
					if strings.HasPrefix(in.Name, "lora_param_") {
						params = append(params, in.Name)
					}
				}
			}
			m.Reindex()
			tm, err := Build(m, loss, params, c.opts...)
			if err != nil {
				t.Fatalf("Build: %v", err)
			}
			listing := graphListing(t, tm)
			line := fmt.Sprintf("nodes=%d sha256=%x", len(tm.Graph().Node), sha256.Sum256([]byte(listing)))
			got[c.name] = line
			if *dumpGraphs != "" {
				p := filepath.Join(*dumpGraphs, strings.ReplaceAll(c.name, "/", "_")+".txt")
				if err := os.WriteFile(p, []byte(listing), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if !*update && golden[c.name] != line {
				t.Errorf("training graph changed:\n got %s\nwant %s\n(run with -dump-graphs DIR before and after the change to diff the listings; -update to accept)", line, golden[c.name])
			}
		})
	}
	if !*update {
		return
	}
	// Cases skipped here (no ../shared) keep their line.
	for name, line := range golden {
		if _, ok := got[name]; !ok {
			got[name] = line
		}
	}
	names := make([]string, 0, len(got))
	for name := range got {
		names = append(names, name)
	}
	sort.Strings(names)
	var sb strings.Builder
	sb.WriteString("# name, node count and sha256 of the listing of each training graph of TestGradientGraphs (go test -run TestGradientGraphs -update)\n")
	for _, name := range names {
		fmt.Fprintf(&sb, "%s %s\n", name, got[name])
	}
	if err := os.MkdirAll(filepath.Dir(graphsGolden), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(graphsGolden, []byte(sb.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}
