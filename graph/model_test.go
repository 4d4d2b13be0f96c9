package graph_test

import (
	"bytes"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

// nil2 returns an empty model proto with an opset.
func nil2() *onnxpb.ModelProto {
	return &onnxpb.ModelProto{IrVersion: 8, OpsetImport: []*onnxpb.OperatorSetIdProto{{Version: 17}}}
}

// chain builds x -> Relu -> Neg -> y, with its nodes stored in reverse.
func chain() *graph.Model {
	m := graph.New(nil2(), "")
	m.AddInput(graph.SymbolicTensorInfo("x", dtype.Float32, []graph.Dim{graph.DimParam("n")}))
	m.AddOutput(graph.SymbolicTensorInfo("y", dtype.Float32, []graph.Dim{graph.DimParam("n")}))
	m.NewNode("Neg", "neg", []string{"r"}, []string{"y"})
	m.NewNode("Relu", "relu", []string{"x"}, []string{"r"})
	return m
}

func TestTopoOrder(t *testing.T) {
	m := chain()
	order, err := m.TopoOrder()
	if err != nil {
		t.Fatal(err)
	}
	if got := order[0].Name + "," + order[1].Name; got != "relu,neg" {
		t.Fatalf("order: got %s want relu,neg", got)
	}
	if err := m.SortNodes(); err != nil {
		t.Fatal(err)
	}
	if m.Graph().Node[0].Name != "relu" {
		t.Fatalf("SortNodes did not reorder")
	}
}

// TestTopoOrderRealUnsorted sorts the PyTorch 1.6 GPT-2 export, whose nodes
// are not in topological order, and checks every edge.
func TestTopoOrderRealUnsorted(t *testing.T) {
	m, err := graph.Load(sharedModel(t, "gpt2-past-torch16"))
	if err != nil {
		t.Fatal(err)
	}
	if isSorted(m, m.Graph().Node) {
		t.Fatal("expected the real export to be unsorted")
	}
	order, err := m.TopoOrder()
	if err != nil {
		t.Fatal(err)
	}
	if len(order) != len(m.Graph().Node) {
		t.Fatalf("order has %d nodes, graph %d", len(order), len(m.Graph().Node))
	}
	if !isSorted(m, order) {
		t.Fatal("TopoOrder is not topological")
	}
}

func isSorted(m *graph.Model, nodes []*onnxpb.NodeProto) bool {
	done := map[string]bool{}
	for _, v := range m.Graph().Input {
		done[v.Name] = true
	}
	for _, i := range m.Graph().Initializer {
		done[i.Name] = true
	}
	for _, n := range nodes {
		for _, in := range graph.NodeInputs(n) {
			if !done[in] && m.Producer(in) != nil {
				return false
			}
		}
		for _, o := range n.Output {
			done[o] = true
		}
	}
	return true
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		edit func(m *graph.Model)
		want string // "" for valid
	}{
		{"valid", func(m *graph.Model) {}, ""},
		{"dangling input", func(m *graph.Model) {
			m.NewNode("Add", "add", []string{"y", "ghost"}, []string{"z"})
		}, `reads "ghost", which nothing defines`},
		{"undefined output", func(m *graph.Model) {
			m.AddOutput(graph.TensorInfo("nowhere", dtype.Float32, nil))
		}, `graph output "nowhere" is not defined`},
		{"defined twice", func(m *graph.Model) {
			m.NewNode("Relu", "relu2", []string{"x"}, []string{"r"})
		}, `"r" is defined twice`},
		{"node name twice", func(m *graph.Model) {
			m.AddNode(&onnxpb.NodeProto{Name: "neg", OpType: "Relu", Input: []string{"x"}, Output: []string{"q"}})
		}, `node name "neg" is used twice`},
		{"cycle", func(m *graph.Model) {
			m.NewNode("Add", "a", []string{"c", "x"}, []string{"b"})
			m.NewNode("Relu", "c", []string{"b"}, []string{"c"})
		}, "cycle"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := chain()
			tc.edit(m)
			err := m.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("got %v want no error", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("got %v want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestIndexesFollowEdits(t *testing.T) {
	m := chain()
	relu := m.NodeByName("relu")
	if p := m.Producer("r"); p != relu {
		t.Fatalf("Producer(r): got %v want relu", p)
	}
	if cs := m.Consumers("r"); len(cs) != 1 || cs[0].Name != "neg" {
		t.Fatalf("Consumers(r): got %v", cs)
	}
	// Insert a node between relu and neg.
	mid := m.UniqueName("r")
	if mid != "r_1" {
		t.Fatalf("UniqueName: got %s want r_1", mid)
	}
	m.ReplaceUses("r", mid)
	m.NewNode("Sigmoid", "sig", []string{"r"}, []string{mid})
	if cs := m.Consumers(mid); len(cs) != 1 || cs[0].Name != "neg" {
		t.Fatalf("Consumers(%s) after ReplaceUses: got %v", mid, cs)
	}
	if cs := m.Consumers("r"); len(cs) != 1 || cs[0].Name != "sig" {
		t.Fatalf("Consumers(r) after ReplaceUses: got %v", cs)
	}
	if err := m.SortNodes(); err != nil {
		t.Fatal(err)
	}
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	m.RemoveNodes(m.NodeByName("sig"))
	if m.Producer(mid) != nil || m.NodeByName("sig") != nil {
		t.Fatal("removed node is still indexed")
	}
	w := graph.NewFloat32Tensor("w", dtype.Float32, []int64{2}, []float32{1, 2})
	m.AddInitializer(w)
	if m.Initializer("w") != w {
		t.Fatal("initializer not indexed")
	}
	if m.RemoveInitializer("w") != w || m.Initializer("w") != nil || len(m.Graph().Initializer) != 0 {
		t.Fatal("RemoveInitializer did not remove")
	}
}

func TestTensorAccess(t *testing.T) {
	m := graph.New(nil2(), "")
	tests := []struct {
		name string
		t    *onnxpb.TensorProto
		want []float32
	}{
		{"float_data", &onnxpb.TensorProto{Name: "a", DataType: int32(dtype.Float32), Dims: []int64{3}, FloatData: []float32{1, -2, 3.5}}, []float32{1, -2, 3.5}},
		{"raw float32", graph.NewFloat32Tensor("b", dtype.Float32, []int64{3}, []float32{1, -2, 3.5}), []float32{1, -2, 3.5}},
		{"raw float16", graph.NewFloat32Tensor("c", dtype.Float16, []int64{3}, []float32{1, -2, 3.5}), []float32{1, -2, 3.5}},
		{"int32_data float16", &onnxpb.TensorProto{Name: "d", DataType: int32(dtype.Float16), Dims: []int64{2}, Int32Data: []int32{0x3c00, 0xc000}}, []float32{1, -2}},
		{"raw bfloat16", graph.NewFloat32Tensor("e", dtype.BFloat16, []int64{3}, []float32{1, -2, 3.5}), []float32{1, -2, 3.5}},
		{"double_data", &onnxpb.TensorProto{Name: "f", DataType: int32(dtype.Float64), Dims: []int64{2}, DoubleData: []float64{0.5, 4}}, []float32{0.5, 4}},
	}
	for _, tc := range tests {
		got, err := m.Float32s(tc.t)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if len(got) != len(tc.want) {
			t.Errorf("%s: got %v want %v", tc.name, got, tc.want)
			continue
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("%s: got %v want %v", tc.name, got, tc.want)
				break
			}
		}
	}
	ints := graph.NewInt64Tensor("i", []int64{2, 2}, []int64{1, -2, 3, 1 << 40})
	got, err := m.Int64s(ints)
	if err != nil || got[1] != -2 || got[3] != 1<<40 {
		t.Errorf("Int64s: got %v, %v", got, err)
	}
	i32 := &onnxpb.TensorProto{Name: "j", DataType: int32(dtype.Int32), Dims: []int64{2}, Int32Data: []int32{7, -9}}
	if got, err := m.Int32s(i32); err != nil || got[1] != -9 {
		t.Errorf("Int32s: got %v, %v", got, err)
	}
	i8 := &onnxpb.TensorProto{Name: "k", DataType: int32(dtype.Int8), Dims: []int64{2}, RawData: []byte{0xff, 3}}
	if got, err := m.Int8s(i8); err != nil || got[0] != -1 || got[1] != 3 {
		t.Errorf("Int8s: got %v, %v", got, err)
	}
	bad := &onnxpb.TensorProto{Name: "bad", DataType: int32(dtype.Float32), Dims: []int64{4}, RawData: []byte{1, 2, 3}}
	if _, err := m.Float32s(bad); err == nil || !strings.Contains(err.Error(), `"bad"`) {
		t.Errorf("short raw data: got %v, want an error naming the tensor", err)
	}
	if _, err := m.Float32s(ints); err == nil {
		t.Errorf("Float32s on int64: got no error")
	}
}

// TestCloneIsIndependent edits a clone and checks that the original keeps
// its nodes and weights.
func TestCloneIsIndependent(t *testing.T) {
	m := chain()
	m.AddInitializer(graph.NewFloat32Tensor("w", dtype.Float32, []int64{2}, []float32{1, 2}))
	c := m.Clone()
	if err := graph.SetFloat32s(c.Initializer("w"), []float32{5, 6}); err != nil {
		t.Fatal(err)
	}
	c.RemoveNodes(c.NodeByName("neg"))
	c.Graph().Initializer[0].Name = "renamed"
	got, err := m.Float32s(m.Initializer("w"))
	if err != nil || got[0] != 1 || got[1] != 2 {
		t.Fatalf("original weight after editing the clone: got %v, %v", got, err)
	}
	if m.NodeByName("neg") == nil || len(m.Graph().Node) != 2 || m.Graph().Initializer[0].Name != "w" {
		t.Fatal("original graph changed when the clone was edited")
	}
}

func TestCloseNil(t *testing.T) {
	var m *graph.Model
	if err := m.Close(); err != nil {
		t.Errorf("Close of a nil Model: got %v, want nil", err)
	}
}

// TestTopoOrderAdversarial: consumers listed before the producers they
// read, so that every producer popped makes a node ready that goes ahead
// of all the others. A sorted ready list pays a copy of the whole list for
// each (quadratic: 40k nodes took 8 s); the sort must stay n log n. The
// bound is 20 times what the heap takes on a slow machine.
func TestTopoOrderAdversarial(t *testing.T) {
	const n = 150_000
	nodes := make([]*onnxpb.NodeProto, 2*n)
	for i := range n {
		v := "v" + strconv.Itoa(i)
		nodes[i] = &onnxpb.NodeProto{Name: "use" + strconv.Itoa(i), OpType: "Neg", Input: []string{v}, Output: []string{"u" + strconv.Itoa(i)}}
		nodes[n+i] = &onnxpb.NodeProto{Name: "make" + strconv.Itoa(i), OpType: "Constant", Output: []string{v}}
	}
	m := graph.New(&onnxpb.ModelProto{Graph: &onnxpb.GraphProto{Node: nodes}}, "")
	start := time.Now()
	order, err := m.TopoOrder()
	if err != nil {
		t.Fatal(err)
	}
	d := time.Since(start)
	t.Logf("TopoOrder of %d nodes: %v", 2*n, d)
	if d > 10*time.Second {
		t.Errorf("TopoOrder of %d nodes took %v: it is not n log n", 2*n, d)
	}
	// Each producer comes right before its consumer, in producer order.
	for i := range n {
		if order[2*i].Name != "make"+strconv.Itoa(i) || order[2*i+1].Name != "use"+strconv.Itoa(i) {
			t.Fatalf("order[%d:%d] = %s, %s; want make%d, use%d", 2*i, 2*i+2, order[2*i].Name, order[2*i+1].Name, i, i)
		}
	}
}

// TestCloneConcurrent: clones made at once from one model are whole, and
// the model keeps its data (Clone used to set the source's RawData to nil
// while it copied, which left other goroutines' clones empty).
func TestCloneConcurrent(t *testing.T) {
	g := &onnxpb.GraphProto{Name: "g"}
	for i := range 200 {
		g.Initializer = append(g.Initializer, graph.NewFloat32Tensor("w"+strconv.Itoa(i), dtype.Float32, []int64{4}, []float32{float32(i), 1, 2, 3}))
	}
	m := graph.New(&onnxpb.ModelProto{Graph: g}, "")
	want := make([][]byte, len(g.Initializer))
	for i, w := range g.Initializer {
		want[i] = append([]byte(nil), w.RawData...)
	}
	var wg sync.WaitGroup
	clones := make([]*graph.Model, 16)
	for i := range clones {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20 {
				clones[i] = m.Clone()
			}
		}()
	}
	wg.Wait()
	for ci, c := range append(clones, m) {
		for i, w := range c.Graph().Initializer {
			if !bytes.Equal(w.RawData, want[i]) {
				t.Fatalf("model %d (16 is the original): initializer %s holds %v, want %v", ci, w.Name, w.RawData, want[i])
			}
		}
	}
	// A clone shares the bytes, and its edits do not reach the original.
	c := m.Clone()
	if &c.Graph().Initializer[0].RawData[0] != &g.Initializer[0].RawData[0] {
		t.Error("the clone copied raw_data instead of sharing it")
	}
	c.Graph().Initializer[0].Name = "renamed"
	c.Graph().Node = append(c.Graph().Node, &onnxpb.NodeProto{Name: "n"})
	if g.Initializer[0].Name != "w0" || len(g.Node) != 0 {
		t.Error("editing the clone changed the original")
	}
}

// TestKeepInitializers: the kept model holds the named initializers only,
// does not change when m's are replaced, and reads m's external data
// after m closes, until it closes itself.
func TestKeepInitializers(t *testing.T) {
	m := chain()
	m.AddInitializer(graph.NewFloat32Tensor("w", dtype.Float32, []int64{2}, []float32{1, 2}))
	m.AddInitializer(graph.NewFloat32Tensor("other", dtype.Float32, []int64{2}, []float32{3, 4}))
	p := filepath.Join(t.TempDir(), "m.onnx")
	if err := m.Save(p, graph.SaveOptions{ExternalData: true, Threshold: 1}); err != nil {
		t.Fatal(err)
	}
	loaded, err := graph.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	k := loaded.KeepInitializers("w", "missing")
	if len(k.Graph().Initializer) != 1 || k.Initializer("w") == nil || k.Initializer("other") != nil {
		t.Fatalf("kept initializers %v, want w only", k.Graph().Initializer)
	}
	if err := graph.SetFloat32s(loaded.Initializer("w"), []float32{5, 6}); err != nil {
		t.Fatal(err)
	}
	if err := loaded.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := k.Float32s(k.Initializer("w"))
	if err != nil || !slices.Equal(got, []float32{1, 2}) {
		t.Fatalf("kept w after m changed and closed: %v, %v; want [1 2]", got, err)
	}
	if err := k.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Float32s(k.Initializer("w")); err == nil || !strings.Contains(err.Error(), "after Close") {
		t.Fatalf("read after both closed: %v, want an error", err)
	}
}
