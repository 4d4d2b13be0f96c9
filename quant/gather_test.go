package quant_test

import (
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
	"github.com/peftonnx/peftonnx/quant"
	rt "github.com/peftonnx/peftonnx/runtime"
)

// TestGatherKernelMatchesDequantize holds ONNX Runtime's own
// GatherBlockQuantized kernel to a Go dequantize of the same blocks: the
// rows it gathers from a table quantized as the transposed weight equal
// the dequantized columns to 1e-6 relative (1e-3 for a float16 output,
// rounded to half).
func TestGatherKernelMatchesDequantize(t *testing.T) {
	requireORT(t)
	const vocab, dim = 37, 48 // 3 blocks of 16: zero points do not fill a byte
	ids := []int64{0, 5, 36, 5, 17, 1}
	for i, c := range []struct {
		bits, block int
		symmetric   bool
		scale       dtype.Type
	}{{4, 16, false, dtype.Float32}, {4, 16, true, dtype.Float32}, {8, 16, false, dtype.Float32}, {8, 16, true, dtype.Float32}, {4, 16, false, dtype.Float16}} {
		t.Run(fmt.Sprintf("bits%d/block%d/sym=%v/%s", c.bits, c.block, c.symmetric, c.scale), func(t *testing.T) {
			table := normals(vocab*dim, 0.1, uint64(i+1)) // [vocab, dim]
			w, err := quant.Quantize(transpose(table, vocab, dim), dim, vocab, quant.Options{Bits: c.bits, BlockSize: c.block, Symmetric: c.symmetric, ScaleType: c.scale})
			if err != nil {
				t.Fatal(err)
			}
			deq, err := w.Dequantize() // [dim, vocab]
			if err != nil {
				t.Fatal(err)
			}
			names := quant.BuilderNames("emb", c.bits)
			inits, err := w.GatherTensors(names)
			if err != nil {
				t.Fatal(err)
			}
			node, err := w.GatherNode(names, "/emb/Gather_Q4", "ids", "Y")
			if err != nil {
				t.Fatal(err)
			}
			m := graph.New(&onnxpb.ModelProto{IrVersion: 8, Graph: &onnxpb.GraphProto{Name: "gbq"}}, "")
			m.SetOpset("", 17)
			m.SetOpset(quant.Domain, 1)
			m.AddInput(graph.SymbolicTensorInfo("ids", dtype.Int64, []graph.Dim{graph.DimParam("M")}))
			m.AddOutput(graph.SymbolicTensorInfo("Y", c.scale, []graph.Dim{graph.DimParam("M"), graph.DimValue(dim)}))
			for _, x := range inits {
				m.AddInitializer(x)
			}
			m.AddNode(node)
			back, err := quant.ReadGatherNode(m, node)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(back, w) {
				t.Errorf("ReadGatherNode does not give back the weight")
			}
			b, err := m.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			s, err := rt.NewSessionFromBytes(b, rt.WithIntraOpThreads(1))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			x, err := rt.NewInt64([]int64{int64(len(ids))}, ids)
			if err != nil {
				t.Fatal(err)
			}
			res, err := s.Run(map[string]*rt.Tensor{"ids": x}, nil)
			if err != nil {
				t.Fatal(err)
			}
			got := res["Y"].ToFloat32()
			want := make([]float64, len(ids)*dim)
			var rtn, ref float64
			for r, id := range ids {
				for h := range dim {
					want[r*dim+h] = float64(deq[h*vocab+int(id)])
					d := want[r*dim+h] - float64(table[int(id)*dim+h])
					rtn += d * d
					ref += float64(table[int(id)*dim+h]) * float64(table[int(id)*dim+h])
				}
			}
			// A float16 output is the float32 value rounded to half.
			tol := 1e-6
			if c.scale == dtype.Float16 {
				tol = 1e-3
			}
			if e := relMaxErr(got, want); e > tol {
				t.Errorf("ORT's GatherBlockQuantized differs from the Go dequantize by %.3g relative, want ≤ %g", e, tol)
			}
			t.Logf("RTN error of the gathered rows %.3g relative", math.Sqrt(rtn/ref))
		})
	}
}

// TestGatherRefusals checks the tables GatherBlockQuantized cannot hold.
func TestGatherRefusals(t *testing.T) {
	for _, c := range []struct {
		bits, k int
		want    string
	}{{2, 64, "takes 4 or 8"}, {4, 40, "not whole blocks"}} {
		w, err := quant.Quantize(normals(c.k*3, 1, 1), c.k, 3, quant.Options{Bits: c.bits, BlockSize: 16})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.GatherTensors(quant.BuilderNames("e", c.bits)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("bits %d, K %d: error %v, want one saying %q", c.bits, c.k, err, c.want)
		}
	}
}

// transpose returns the [cols, rows] transpose of v [rows, cols].
func transpose(v []float32, rows, cols int) []float32 {
	out := make([]float32, len(v))
	for r := range rows {
		for c := range cols {
			out[c*rows+r] = v[r*cols+c]
		}
	}
	return out
}
