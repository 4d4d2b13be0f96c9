package main

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
	"github.com/peftonnx/peftonnx/rewrite"
)

func init() {
	register(&command{
		name:    "inspect",
		args:    "MODEL [--target RE]... [--modules NAMES] [--json]",
		summary: "show a model's opsets, inputs, outputs, ops, parameter count and linear layers",
		detail: `
Dimensions that the model names (batch_size) are shown by name, and
unknown ones as "?". Linear layers are MatMul and Gemm nodes whose weight is
a 2-D float initializer; in×out is the matrix the node multiplies by.

It suggests targets for the usual groups of layers (attention q and v;
q, k, v and o; the MLP; every linear layer but the head), found from the
graph's structure or, where that does not show them, from the module
names: a line per group with the --modules and the --target that select
it.

With --target, inspect also shows which linear layers an injection with
the same targets would adapt. A target must match the whole module name or
the whole node name, as Python's re.fullmatch does: ".*q_proj.*" is the
usual form. --modules q_proj,v_proj names them as HF PEFT's
target_modules list does (by suffix), and --modules all-linear selects
every linear layer but the output head. Targets that match nothing are an
error that lists the modules.

--json prints the same facts as one JSON document whose field order is
fixed, for scripts.`,
		run: runInspect,
	})
}

// inspection is what inspect reports. Its JSON form is the --json output.
type inspection struct {
	Model      string      `json:"model"`
	IRVersion  int64       `json:"ir_version"`
	Producer   string      `json:"producer"`
	Opsets     []opsetInfo `json:"opsets"`
	Inputs     []valueInfo `json:"inputs"`
	Outputs    []valueInfo `json:"outputs"`
	Nodes      int         `json:"nodes"`
	Ops        []opCount   `json:"ops"`
	Parameters int64       `json:"parameters"`
	// Initializers is the number of initializers, whose elements make up
	// Parameters.
	Initializers int          `json:"initializers"`
	Linears      []linearInfo `json:"linears"`
	// Others are the embeddings and convolutions, which LoRA adapts too.
	Others []linearInfo `json:"other_layers,omitempty"`
	// Nested are layers inside If/Loop/Scan subgraphs, which it does not.
	Nested []rewrite.NestedLayer `json:"nested_layers,omitempty"`
	// Suggestions are the usual target groups (rewrite.SuggestTargets).
	Suggestions []suggestion `json:"suggestions"`
	Targets     *targetInfo  `json:"targets,omitempty"`
}

// suggestion is one usual target group and the flags that select it.
type suggestion struct {
	Group   string   `json:"group"`
	Modules []string `json:"modules,omitempty"`
	Target  string   `json:"target,omitempty"`
	Layers  int      `json:"layers"`
}

type opsetInfo struct {
	Domain  string `json:"domain"`
	Version int64  `json:"version"`
}

type valueInfo struct {
	Name  string `json:"name"`
	DType string `json:"dtype"`
	// Shape holds a number for a fixed dimension, a string for a named
	// one and null for an unknown one; it is null when the rank is unknown.
	Shape []any `json:"shape"`
	// Default is set on an input that an initializer of the same name
	// feeds when the caller does not.
	Default bool `json:"has_default,omitempty"`
}

type opCount struct {
	Op     string `json:"op"`
	Domain string `json:"domain,omitempty"`
	Count  int    `json:"count"`
}

type linearInfo struct {
	Module      string `json:"module"`
	Role        string `json:"role,omitempty"`
	Node        string `json:"node"`
	Op          string `json:"op"`
	Weight      string `json:"weight"`
	WeightDType string `json:"weight_dtype"`
	In          int64  `json:"in"`
	Out         int64  `json:"out"`
	// Kind is "embedding" or "conv" for the other layers (see
	// rewrite.FindLayers), and Kernel a convolution's kernel.
	Kind   string  `json:"kind,omitempty"`
	Kernel []int64 `json:"kernel,omitempty"`
}

type targetInfo struct {
	Patterns []string `json:"patterns"`
	Modules  []string `json:"modules"`
}

func runInspect(cx *context, args []string) error {
	fs := cx.flags()
	tf := addTargetFlags(fs, "show")
	asJSON := fs.Bool("json", false, "print one JSON document instead of text")
	model, err := cx.parseOne(args, "MODEL")
	if err != nil {
		return err
	}
	m, err := graph.Load(model)
	if err != nil {
		return err
	}
	defer m.Close()
	in, err := inspectModel(m, model, tf.patterns())
	if err != nil {
		return err
	}
	if *asJSON {
		b, err := json.MarshalIndent(in, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(cx.stdout, "%s\n", b)
		return err
	}
	return in.writeText(cx.stdout)
}

// inspectModel gathers what inspect reports about m, which was loaded
// from path.
func inspectModel(m *graph.Model, path string, targets []string) (*inspection, error) {
	g := m.Graph()
	in := &inspection{
		Model:     path,
		IRVersion: m.Proto.IrVersion,
		Producer:  strings.TrimSpace(m.Proto.ProducerName + " " + m.Proto.ProducerVersion),
		Nodes:     len(g.Node),
		Opsets:    []opsetInfo{},
		Inputs:    []valueInfo{},
		Outputs:   []valueInfo{},
		Ops:       []opCount{},
		Linears:   []linearInfo{},
	}
	for _, o := range m.Proto.OpsetImport {
		d := o.Domain
		if d == "" {
			d = "ai.onnx"
		}
		in.Opsets = append(in.Opsets, opsetInfo{d, o.Version})
	}
	for _, v := range g.Input {
		vi := describeValue(v)
		vi.Default = m.Initializer(v.Name) != nil
		in.Inputs = append(in.Inputs, vi)
	}
	for _, v := range g.Output {
		in.Outputs = append(in.Outputs, describeValue(v))
	}

	counts := map[[2]string]int{}
	for _, n := range g.Node {
		d := n.Domain
		if d == "ai.onnx" {
			d = ""
		}
		counts[[2]string{n.OpType, d}]++
	}
	for k, c := range counts {
		in.Ops = append(in.Ops, opCount{Op: k[0], Domain: k[1], Count: c})
	}
	sort.Slice(in.Ops, func(i, j int) bool {
		a, b := in.Ops[i], in.Ops[j]
		if a.Count != b.Count {
			return a.Count > b.Count
		}
		if a.Op != b.Op {
			return a.Op < b.Op
		}
		return a.Domain < b.Domain
	})

	for _, t := range g.Initializer {
		in.Parameters += graph.NumElements(t.Dims)
	}
	in.Initializers = len(g.Initializer)

	linears, err := rewrite.FindLayers(m)
	if err != nil {
		return nil, err
	}
	for _, l := range linears {
		wdt := l.WeightDType.String()
		if l.Quantized() { // the packed uint8 holds codes of this width
			wdt = "int" + strconv.FormatInt(graph.IntAttr(l.Node, "bits", 4), 10)
		}
		li := linearInfo{
			Module: l.Module, Role: string(l.Role), Node: l.NodeName, Op: l.Op, Weight: l.Weight,
			WeightDType: wdt, In: l.In, Out: l.Out,
			Kind: l.Kind, Kernel: l.Kernel,
		}
		if l.Kind == rewrite.KindLinear {
			in.Linears = append(in.Linears, li)
		} else {
			in.Others = append(in.Others, li)
		}
	}
	in.Nested = rewrite.FindNestedLayers(m)
	in.Suggestions = []suggestion{}
	for _, g := range rewrite.SuggestTargets(onlyLinear(linears)) {
		in.Suggestions = append(in.Suggestions, suggestion{Group: g.Name, Modules: g.Modules, Target: g.Target, Layers: g.Layers})
	}
	if len(targets) > 0 {
		matched, err := rewrite.MatchTargets(linears, targets)
		if err != nil {
			return nil, err
		}
		in.Targets = &targetInfo{Patterns: append([]string{}, targets...), Modules: rewrite.LinearModules(matched)}
	}
	return in, nil
}

// describeValue returns the name, element type and shape of a graph input
// or output.
func describeValue(v *onnxpb.ValueInfoProto) valueInfo {
	vi := valueInfo{Name: v.Name, DType: "?"}
	tt := v.GetType().GetTensorType()
	if tt == nil {
		vi.DType = "non-tensor"
		return vi
	}
	vi.DType = dtype.Type(tt.ElemType).String()
	if tt.Shape == nil {
		return vi
	}
	vi.Shape = []any{}
	for _, d := range tt.Shape.Dim {
		switch x := d.Value.(type) {
		case *onnxpb.TensorShapeProto_Dimension_DimValue:
			vi.Shape = append(vi.Shape, x.DimValue)
		case *onnxpb.TensorShapeProto_Dimension_DimParam:
			vi.Shape = append(vi.Shape, x.DimParam)
		default:
			vi.Shape = append(vi.Shape, nil)
		}
	}
	return vi
}

// formatDims writes a shape from describeValue: [batch_size, 1, 16]; an
// unknown rank is "[...]".
func formatDims(shape []any) string {
	if shape == nil {
		return "[...]"
	}
	parts := make([]string, len(shape))
	for i, d := range shape {
		switch x := d.(type) {
		case int64:
			parts[i] = strconv.FormatInt(x, 10)
		case string:
			parts[i] = x
		default:
			parts[i] = "?"
		}
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// writeText prints the report for people.
func (in *inspection) writeText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	p := func(format string, args ...any) { fmt.Fprintf(tw, format, args...) }

	p("model:\t%s\n", in.Model)
	p("ir version:\t%d\n", in.IRVersion)
	if in.Producer != "" {
		p("producer:\t%s\n", in.Producer)
	}
	opsets := make([]string, len(in.Opsets))
	for i, o := range in.Opsets {
		opsets[i] = fmt.Sprintf("%s %d", o.Domain, o.Version)
	}
	p("opsets:\t%s\n", strings.Join(opsets, ", "))
	p("parameters:\t%d in %d initializers\n", in.Parameters, in.Initializers)
	tw.Flush()

	p("\ninputs (%d):\n", len(in.Inputs))
	for _, v := range in.Inputs {
		note := ""
		if v.Default {
			note = "\t(optional: an initializer gives its default)"
		}
		p("  %s\t%s\t%s%s\n", v.Name, v.DType, formatDims(v.Shape), note)
	}
	tw.Flush()
	p("\noutputs (%d):\n", len(in.Outputs))
	for _, v := range in.Outputs {
		p("  %s\t%s\t%s\n", v.Name, v.DType, formatDims(v.Shape))
	}
	tw.Flush()

	p("\nops (%d nodes, %d types):\n", in.Nodes, len(in.Ops))
	for _, o := range in.Ops {
		if o.Domain != "" {
			p("  %s\t%d\t%s\n", o.Op, o.Count, o.Domain)
		} else {
			p("  %s\t%d\n", o.Op, o.Count)
		}
	}
	tw.Flush()

	p("\nlinear layers (%d):\n", len(in.Linears))
	if len(in.Linears) > 0 {
		p("  module\tnode\top\tweight\tdtype\tin×out\n")
	}
	for _, l := range in.Linears {
		node := l.Node
		if node == "" {
			node = "(unnamed)"
		}
		p("  %s\t%s\t%s\t%s\t%s\t%d×%d\n", l.Module, node, l.Op, l.Weight, l.WeightDType, l.In, l.Out)
	}
	tw.Flush()
	if len(in.Others) > 0 {
		p("\nembedding and convolution layers (%d):\n", len(in.Others))
		p("  module\tnode\tkind\tweight\tdtype\tin×out\tkernel\n")
		for _, l := range in.Others {
			node := l.Node
			if node == "" {
				node = "(unnamed)"
			}
			kernel := "-"
			if l.Kernel != nil {
				ks := make([]string, len(l.Kernel))
				for i, k := range l.Kernel {
					ks[i] = strconv.FormatInt(k, 10)
				}
				kernel = strings.Join(ks, "×")
			}
			p("  %s\t%s\t%s\t%s\t%s\t%d×%d\t%s\n", l.Module, node, l.Kind, l.Weight, l.WeightDType, l.In, l.Out, kernel)
		}
		tw.Flush()
	}
	if len(in.Nested) > 0 {
		p("\nlayers inside subgraphs, which LoRA does not adapt (%d):\n", len(in.Nested))
		for _, l := range in.Nested {
			p("  %s\t%s\tin %s of %s\n", l.Node, l.Op, l.Attr, l.Owner)
		}
		tw.Flush()
	}

	if len(in.Suggestions) > 0 {
		p("\nsuggested targets (inject --modules, or --target):\n")
		for _, g := range in.Suggestions {
			unit := "layers"
			if g.Layers == 1 {
				unit = "layer"
			}
			p("  %s\t%d %s", g.Group, g.Layers, unit)
			if len(g.Modules) > 0 {
				p("\t--modules %s", strings.Join(g.Modules, ","))
			} else {
				p("\t(no --modules names these alone)")
			}
			if g.Target != "" {
				p("\t--target '%s'", g.Target)
			}
			p("\n")
		}
		tw.Flush()
	}

	if t := in.Targets; t != nil {
		quoted := make([]string, len(t.Patterns))
		for i, s := range t.Patterns {
			quoted[i] = strconv.Quote(s)
		}
		p("\ntargets %s adapt %d of %d modules:\n", strings.Join(quoted, ", "), len(t.Modules), countModules(append(slices.Clone(in.Linears), in.Others...)))
		for _, mod := range t.Modules {
			p("  %s\n", mod)
		}
	}
	return tw.Flush()
}

// countModules counts the distinct module names of linear layers: layers
// that share a weight share a module.
func countModules(ls []linearInfo) int {
	seen := map[string]bool{}
	for _, l := range ls {
		seen[l.Module] = true
	}
	return len(seen)
}

// onlyLinear returns the linear layers of ls (Kind KindLinear).
func onlyLinear(ls []rewrite.Linear) []rewrite.Linear {
	var out []rewrite.Linear
	for _, l := range ls {
		if l.Kind == rewrite.KindLinear {
			out = append(out, l)
		}
	}
	return out
}
