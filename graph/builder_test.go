package graph_test

import (
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

// builderModel returns a model with an input x and a node already called
// "/s/Relu" that writes "/s/Relu_output_0", so that names collide.
func builderModel() *graph.Model {
	m := graph.New(nil2(), "")
	m.AddInput(graph.TensorInfo("x", dtype.Float32, []int64{2}))
	m.NewNode("Relu", "/s/Relu", []string{"x"}, []string{"/s/Relu_output_0"})
	return m
}

func TestBuilderNames(t *testing.T) {
	tests := []struct {
		reason string
		opts   graph.BuilderOptions
		// want lists node name and output name of: Relu, Relu, Add in
		// the child scope "c", and a two-output Split.
		want []string
	}{
		{"outputs after the unique node name, as PyTorch's exporter",
			graph.BuilderOptions{Scope: "/s"},
			[]string{"/s/Relu_1", "/s/Relu_1_output_0", "/s/Relu_2", "/s/Relu_2_output_0", "/s/c/Add", "/s/c/Add_output_0",
				"/s/Split", "/s/Split_output_0", "/s/Split_output_1"}},
		{"outputs under the node",
			graph.BuilderOptions{Scope: "/s", Outputs: graph.OutputsUnderNode},
			[]string{"/s/Relu_1", "/s/Relu_1/output_0", "/s/Relu_2", "/s/Relu_2/output_0", "/s/c/Add", "/s/c/Add/output_0",
				"/s/Split", "/s/Split/output_0", "/s/Split/output_1"}},
		{"outputs after scope and op, made unique on their own",
			graph.BuilderOptions{Scope: "/s", Outputs: graph.OutputsAfterOp},
			[]string{"/s/Relu_1", "/s/Relu_output_0_1", "/s/Relu_2", "/s/Relu_output_0_2", "/s/c/Add", "/s/c/Add_output_0",
				"/s/Split", "/s/Split_output_0", "/s/Split_output_1"}},
		{"node names from NodeName",
			graph.BuilderOptions{Scope: "/s", NodeName: func(scope, op string) string { return op + "@" + scope }},
			[]string{"Relu@/s", "Relu@/s_output_0", "Relu@/s_1", "Relu@/s_1_output_0", "Add@/s/c", "Add@/s/c_output_0",
				"Split@/s", "Split@/s_output_0", "Split@/s_output_1"}},
	}
	for _, tc := range tests {
		m := builderModel()
		b := graph.NewBuilder(m, tc.opts)
		var got []string
		v := b.Op("Relu", []string{"x"})
		got = append(got, m.Producer(v).Name, v)
		v = b.Op("Relu", []string{v})
		got = append(got, m.Producer(v).Name, v)
		v = b.In("c").Op("Add", []string{v, v})
		got = append(got, m.Producer(v).Name, v)
		n := b.Node("", "Split", []string{v}, 2, graph.AttrInt("axis", 0))
		got = append(got, n.Name)
		got = append(got, n.Output...)
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s:\ngot  %q\nwant %q", tc.reason, got, tc.want)
		}
		if err := m.Validate(); err != nil {
			t.Errorf("%s: %v", tc.reason, err)
		}
	}
}

func TestBuilderScopes(t *testing.T) {
	b := graph.NewBuilder(builderModel(), graph.BuilderOptions{Scope: "/model"})
	tests := []struct {
		b    *graph.Builder
		want string
	}{
		{b, "/model"},
		{b.In("layers.0"), "/model/layers.0"},
		{b.In("layers.0").In("attn"), "/model/layers.0/attn"},
		{b.At("lora/q_proj"), "lora/q_proj"},
		{b.At(""), ""},
	}
	for i, tc := range tests {
		if got := tc.b.Scope(); got != tc.want {
			t.Errorf("test %d: scope %q, want %q", i, got, tc.want)
		}
		if tc.b.Model() != b.Model() {
			t.Errorf("test %d: a scope adds to another model", i)
		}
	}
}

func TestBuilderNodeTo(t *testing.T) {
	m := builderModel()
	b := graph.NewBuilder(m, graph.BuilderOptions{Scope: "/s"})
	n := b.NodeTo("com.microsoft", "FusedOp", []string{"x"}, []string{"y", "", "z"}, graph.AttrString("mode", "fast"))
	if n.Name != "/s/FusedOp" || n.Domain != "com.microsoft" || !slices.Equal(n.Output, []string{"y", "", "z"}) {
		t.Errorf("got node %q in domain %q writing %q, want /s/FusedOp in com.microsoft writing [y  z]", n.Name, n.Domain, n.Output)
	}
	if m.Producer("z") != n || graph.StringAttr(n, "mode", "") != "fast" {
		t.Error("the node is not indexed as z's producer, or lost its attribute")
	}
}

func TestBuilderConstants(t *testing.T) {
	m := builderModel()
	var inits []string
	b := graph.NewBuilder(m, graph.BuilderOptions{Scope: "/s", ConstantPrefix: "c/",
		OnInitializer: func(t *onnxpb.TensorProto) { inits = append(inits, t.Name) }})
	m.AddInitializer(graph.NewInt64Tensor("c/i64_1", []int64{1}, []int64{7})) // takes the first name
	typed := &onnxpb.TensorProto{DataType: int32(dtype.Float32), Dims: []int64{2}, FloatData: []float32{0, 1}}
	tests := []struct {
		reason string
		got    string
		want   string
	}{
		{"a 1-D int64, its name taken", b.Int64s(1), "c/i64_1_1"},
		{"the same from another scope", b.In("x").Int64s(1), "c/i64_1_1"},
		{"a rank-0 int64 of the same value", b.Int64(1), "c/i64s_1"},
		{"a vector", b.Int64s(0, -1), "c/i64_0_-1"},
		{"an empty vector", b.Int64s(), "c/i64"},
		{"a float32 scalar", b.Scalar(dtype.Float32, 0.5), "c/float32/0.5"},
		{"the same scalar again", b.At("elsewhere").Scalar(dtype.Float32, 0.5), "c/float32/0.5"},
		{"a float16 scalar of the same value", b.Scalar(dtype.Float16, 0.5), "c/float16/0.5"},
		{"a float tensor", b.Floats(dtype.Float32, []int64{2}, []float64{0, 1}), "c/float32_2"},
		{"the same values held in float_data", b.Constant("typed", typed), "c/float32_2"},
		{"a generic tensor", b.Constant("mask", graph.NewFloat32Tensor("", dtype.Float32, []int64{1, 2}, []float32{0, 1})), "c/mask"},
	}
	for _, tc := range tests {
		if tc.got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.reason, tc.got, tc.want)
		}
	}
	// Tensors whose data the builder cannot compare are never shared.
	word := func(s string) *onnxpb.TensorProto {
		return &onnxpb.TensorProto{DataType: int32(dtype.String), StringData: [][]byte{[]byte(s)}}
	}
	if w1, w2 := b.Constant("word", word("a")), b.Constant("word", word("b")); w1 != "c/word" || w2 != "c/word_1" {
		t.Errorf("two string constants are %q and %q, want c/word and c/word_1", w1, w2)
	}
	wantInits := []string{"c/i64_1_1", "c/i64s_1", "c/i64_0_-1", "c/i64", "c/float32/0.5", "c/float16/0.5", "c/float32_2", "c/mask", "c/word", "c/word_1"}
	if !slices.Equal(inits, wantInits) {
		t.Errorf("OnInitializer saw %q, want %q", inits, wantInits)
	}
	if got := len(m.Graph().Initializer); got != 1+len(wantInits) {
		t.Errorf("%d initializers, want %d", got, 1+len(wantInits))
	}
	if v, _ := m.Int64s(m.Initializer("c/i64_0_-1")); !slices.Equal(v, []int64{0, -1}) {
		t.Errorf("c/i64_0_-1 holds %v", v)
	}
	if v, _ := m.Float32s(m.Initializer("c/float16/0.5")); graph.TypeOf(m.Initializer("c/float16/0.5")) != dtype.Float16 || !slices.Equal(v, []float32{0.5}) {
		t.Errorf("c/float16/0.5 holds %v", v)
	}
}

func TestBuilderFloat64ScalarIsExact(t *testing.T) {
	m := builderModel()
	b := graph.NewBuilder(m, graph.BuilderOptions{})
	const v = 0.1 // not a float32
	tp := m.Initializer(b.Scalar(dtype.Float64, v))
	if graph.TypeOf(tp) != dtype.Float64 || len(tp.RawData) != 8 || math.Float64frombits(leUint64(tp.RawData)) != v {
		t.Errorf("got %s %v, want float64 %v exactly", graph.TypeOf(tp), tp.RawData, v)
	}
}

func leUint64(b []byte) uint64 {
	var u uint64
	for i := 7; i >= 0; i-- {
		u = u<<8 | uint64(b[i])
	}
	return u
}

func TestBuilderConstantNodes(t *testing.T) {
	m := builderModel()
	var nodes []string
	b := graph.NewBuilder(m, graph.BuilderOptions{ConstantNodes: true, OnNode: func(n *onnxpb.NodeProto) {
		if m.NodeByName(n.Name) != n {
			t.Errorf("OnNode(%q) ran before the node was in the model", n.Name)
		}
		nodes = append(nodes, n.Name)
	}})
	layer := b.At("/model/layers.0")
	one := layer.Int64s(1)
	again := b.At("/model/layers.1").Int64s(1)
	half := layer.Scalar(dtype.Float32, 0.5)
	y := layer.Op("Unsqueeze", []string{"x", one})
	if one != again {
		t.Errorf("the same constant from two scopes: %q and %q", one, again)
	}
	wantNodes := []string{"/Constant", "/Constant_1", "/model/layers.0/Unsqueeze"}
	if !slices.Equal(nodes, wantNodes) {
		t.Errorf("OnNode saw %q, want %q", nodes, wantNodes)
	}
	c := m.Producer(half)
	if c == nil || c.OpType != "Constant" || len(m.Graph().Initializer) != 0 {
		t.Fatalf("%q is not written by a Constant node, or initializers were added", half)
	}
	if v, _ := m.Float32s(graph.Attr(c, "value").T); !slices.Equal(v, []float32{0.5}) {
		t.Errorf("the Constant holds %v, want [0.5]", v)
	}
	if y != "/model/layers.0/Unsqueeze_output_0" {
		t.Errorf("got output %q", y)
	}
}

func TestBuilderKeepOutput(t *testing.T) {
	m := builderModel()
	b := graph.NewBuilder(m, graph.BuilderOptions{Scope: "/s"})
	drop := b.Node("", "Dropout", []string{"x"}, 1)
	tests := []struct {
		reason string
		i      int
		base   string
		want   string
		outs   []string
	}{
		{"an output the node writes", 0, "ignored", "/s/Dropout_output_0", []string{"/s/Dropout_output_0"}},
		{"a missing optional output", 1, "/s/Dropout/mask", "/s/Dropout/mask", []string{"/s/Dropout_output_0", "/s/Dropout/mask"}},
		{"asked again", 1, "/s/Dropout/mask", "/s/Dropout/mask", []string{"/s/Dropout_output_0", "/s/Dropout/mask"}},
		{"past the end, its name taken", 3, "/s/Dropout/mask", "/s/Dropout/mask_1", []string{"/s/Dropout_output_0", "/s/Dropout/mask", "", "/s/Dropout/mask_1"}},
	}
	for _, tc := range tests {
		got := b.KeepOutput(drop, tc.i, tc.base)
		if got != tc.want || !slices.Equal(drop.Output, tc.outs) {
			t.Errorf("%s: got %q, outputs %q; want %q, outputs %q", tc.reason, got, drop.Output, tc.want, tc.outs)
		}
		if m.Producer(got) != drop {
			t.Errorf("%s: %q is not indexed as the node's output", tc.reason, got)
		}
	}
}

func TestBuilderInitializersAndInputs(t *testing.T) {
	m := builderModel()
	var seen []string
	b := graph.NewBuilder(m, graph.BuilderOptions{OnInitializer: func(t *onnxpb.TensorProto) { seen = append(seen, t.Name) }})
	w1 := b.Initializer("w", graph.NewFloat32Tensor("", dtype.Float32, []int64{2}, []float32{1, 2}))
	w2 := b.Initializer("w", graph.NewFloat32Tensor("", dtype.Float32, []int64{2}, []float32{1, 2}))
	flag := b.InputWithDefault("x", &onnxpb.TensorProto{DataType: int32(dtype.Bool), RawData: []byte{0}})
	if w1 != "w" || w2 != "w_1" || flag != "x_1" {
		t.Errorf("got names %q, %q, %q; want w, w_1 (initializers are not shared) and x_1", w1, w2, flag)
	}
	in := m.Input(flag)
	dt, dims, ok := graph.ValueShape(in)
	if dt != dtype.Bool || len(dims) != 0 || !ok || m.Initializer(flag) == nil {
		t.Errorf("input %q is %s %v (shaped %v), initializer %v; want a bool scalar with a default", flag, dt, dims, ok, m.Initializer(flag))
	}
	if want := []string{"w", "w_1", "x_1"}; !slices.Equal(seen, want) {
		t.Errorf("OnInitializer saw %q, want %q", seen, want)
	}
}

func TestBuilderManyNodesStayUnique(t *testing.T) {
	m := builderModel()
	b := graph.NewBuilder(m, graph.BuilderOptions{Scope: "/s", Outputs: graph.OutputsAfterOp})
	v := "x"
	for range 30 {
		v = b.Op("Relu", []string{v})
		v = b.In("inner").Op("Relu", []string{b.Node("", "Split", []string{v}, 2).Output[1]})
	}
	m.AddOutput(graph.TensorInfo(v, dtype.Float32, []int64{2}))
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, n := range m.Graph().Node {
		for _, s := range append([]string{n.Name}, n.Output...) {
			if names[s] {
				t.Fatalf("name %q used twice", s)
			}
			names[s] = true
		}
	}
	if !strings.HasPrefix(v, "/s/inner/Relu_output_0_") {
		t.Errorf("last output %q", v)
	}
	if _, err := strconv.Atoi(strings.TrimPrefix(v, "/s/inner/Relu_output_0_")); err != nil {
		t.Errorf("last output %q has no numeric suffix", v)
	}
}
