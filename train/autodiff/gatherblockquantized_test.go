package autodiff

import (
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/quant"
)

// TestInferGatherBlockQuantized: an int4 table [40, 32] (data [40, 16]
// bytes) gathered by ids [B, S] gives [B, S, 32] of the scales' type, for
// 4 and 8 bits and float32 and float16 scales.
func TestInferGatherBlockQuantized(t *testing.T) {
	for _, c := range []struct {
		bits  int
		scale dtype.Type
	}{{4, dtype.Float32}, {8, dtype.Float16}} {
		w, err := quant.Quantize(make([]float32, 32*40), 32, 40, quant.Options{Bits: c.bits, BlockSize: 16, ScaleType: c.scale})
		if err != nil {
			t.Fatal(err)
		}
		names := quant.BuilderNames("e", c.bits)
		inits, err := w.GatherTensors(names)
		if err != nil {
			t.Fatal(err)
		}
		node, err := w.GatherNode(names, "gbq", "ids", "y")
		if err != nil {
			t.Fatal(err)
		}
		g := newTestGraph(t, 17, dtype.Float32, declStatic)
		g.m.AddInput(graph.SymbolicTensorInfo("ids", dtype.Int64, []graph.Dim{graph.DimParam("B"), graph.DimValue(5)}))
		for _, x := range inits {
			g.m.AddInitializer(x)
		}
		g.m.AddNode(node)
		g.m.Reindex()
		f := newInferer(g.m)
		f.run(g.m.Graph().Node)
		want := rankShape(dim{sym: "$B"}, known(5), known(32))
		if got := f.get("y"); got.elem != c.scale || !sameOrUnknown(got.shape, want) || !got.shape.ok {
			t.Errorf("%d bits: y is %s %v, want %s %v", c.bits, got.elem, got.shape, c.scale, want)
		}
	}
}
