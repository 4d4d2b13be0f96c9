package autodiff

import (
	"fmt"
	"testing"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
)

func TestReshapeLike(t *testing.T) {
	requireORT(t)
	forModes(t, []int64{11, 17}, allModes, func(t *testing.T, opset int64, mode declMode) {
		build := []struct {
			name string
			f    func(g *testGraph, x string) string
		}{
			{"Reshape", func(g *testGraph, x string) string {
				return g.node("Reshape", []string{x, g.ints(i64s(2), 3, -1)})
			}},
			{"Flatten", func(g *testGraph, x string) string {
				return g.node("Flatten", []string{x}, graph.AttrInt("axis", 2))
			}},
			{"Unsqueeze", func(g *testGraph, x string) string {
				if opset < 13 {
					return g.node("Unsqueeze", []string{x}, graph.AttrInts("axes", 0, -1))
				}
				return g.node("Unsqueeze", []string{x, g.ints(i64s(2), 0, -1)})
			}},
			{"Squeeze", func(g *testGraph, x string) string {
				if opset < 13 {
					return g.node("Squeeze", []string{x}, graph.AttrInts("axes", 1))
				}
				return g.node("Squeeze", []string{x, g.ints(i64s(1), 1)})
			}},
			{"Transpose", func(g *testGraph, x string) string {
				return g.node("Transpose", []string{x}, graph.AttrInts("perm", 2, 0, 3, 1))
			}},
			{"TransposeDefault", func(g *testGraph, x string) string {
				return g.node("Transpose", []string{x})
			}},
			{"Expand", func(g *testGraph, x string) string {
				return g.node("Expand", []string{x, g.ints(i64s(5), 2, 2, 1, 3, 2)})
			}},
		}
		for _, b := range build {
			t.Run(b.name, func(t *testing.T) {
				g := newTestGraph(t, opset, dtype.Float64, mode)
				x := g.param("x", i64s(2, 1, 3, 2), nil)
				g.check(b.f(g, x))
			})
		}
	})
}

func TestConcat(t *testing.T) {
	requireORT(t)
	forModes(t, []int64{11, 17}, allModes, func(t *testing.T, opset int64, mode declMode) {
		g := newTestGraph(t, opset, dtype.Float64, mode)
		a := g.param("a", i64s(2, 1, 3), nil)
		b := g.input("b", i64s(2, 2, 3), nil)
		c := g.param("c", i64s(2, 3, 3), nil)
		g.check(g.node("Concat", []string{a, b, c, a}, graph.AttrInt("axis", -2)))
	})
}

func TestSplit(t *testing.T) {
	requireORT(t)
	forModes(t, []int64{11, 13, 18}, allModes, func(t *testing.T, opset int64, mode declMode) {
		for _, form := range []string{"sizes", "equal"} {
			t.Run(form, func(t *testing.T) {
				g := newTestGraph(t, opset, dtype.Float64, mode)
				x := g.param("x", i64s(2, 6), nil)
				var outs []string
				switch {
				case form == "equal" && opset >= 18:
					outs = g.nodeN("", "Split", []string{x}, 3, graph.AttrInt("axis", 1), graph.AttrInt("num_outputs", 3))
				case form == "equal":
					outs = g.nodeN("", "Split", []string{x}, 3, graph.AttrInt("axis", 1))
				case opset < 13:
					outs = g.nodeN("", "Split", []string{x}, 3, graph.AttrInt("axis", -1), graph.AttrInts("split", 1, 2, 3))
				default:
					outs = g.nodeN("", "Split", []string{x, g.ints(i64s(3), 1, 2, 3)}, 3, graph.AttrInt("axis", -1))
				}
				// The middle part goes unused: its gradient is zero.
				y := g.node("Concat", []string{outs[2], outs[0]}, graph.AttrInt("axis", 1))
				g.check(y)
			})
		}
	})
}

func TestSlice(t *testing.T) {
	requireORT(t)
	cases := []struct {
		name                      string
		starts, ends, axes, steps []int64
	}{
		{"simple", i64s(1), i64s(3), i64s(1), nil},
		{"negative", i64s(-3, 0), i64s(-1, 100), i64s(-1, 0), nil},
		{"steps", i64s(0, 4), i64s(2, 0), i64s(0, 2), i64s(1, -2)},
		{"clamped", i64s(-100), i64s(1 << 62), i64s(1), i64s(2)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			forModes(t, []int64{11, 17}, allModes, func(t *testing.T, opset int64, mode declMode) {
				g := newTestGraph(t, opset, dtype.Float64, mode)
				x := g.param("x", i64s(3, 4, 5), nil)
				n := int64(len(c.starts))
				in := []string{x, g.ints(i64s(n), c.starts...), g.ints(i64s(n), c.ends...), g.ints(i64s(n), c.axes...)}
				if c.steps != nil {
					in = append(in, g.ints(i64s(n), c.steps...))
				}
				g.check(g.node("Slice", in))
			})
		})
	}
	t.Run("computed_starts", func(t *testing.T) {
		g := newTestGraph(t, 13, dtype.Float64, declSymbolic)
		x := g.param("x", i64s(3, 4), nil)
		starts := g.intInput("starts", i64s(1), i64s(1))
		g.check(g.node("Slice", []string{x, starts, g.ints(i64s(1), 3), g.ints(i64s(1), 1)}))
	})
}

func TestGather(t *testing.T) {
	requireORT(t)
	// Repeated and negative indices: an embedding lookup where a token
	// occurs twice must accumulate both gradients into its row.
	idx := []int64{0, 2, -1, 2, 1, 0}
	forModes(t, []int64{11, 13, 16}, allModes, func(t *testing.T, opset int64, mode declMode) {
		for _, axis := range []int64{0, 1, -1} {
			t.Run(fmt.Sprintf("axis%d", axis), func(t *testing.T) {
				g := newTestGraph(t, opset, dtype.Float64, mode)
				data := g.param("data", i64s(4, 3, 5), nil)
				ind := g.intInput("ind", i64s(2, 3), idx)
				g.check(g.node("Gather", []string{data, ind}, graph.AttrInt("axis", axis)))
			})
		}
		t.Run("scalar_index", func(t *testing.T) {
			g := newTestGraph(t, opset, dtype.Float64, mode)
			data := g.param("data", i64s(4, 3), nil)
			g.check(g.node("Gather", []string{data, g.ints(nil, 2)}, graph.AttrInt("axis", 0)))
		})
	})
}

func TestGatherElements(t *testing.T) {
	requireORT(t)
	forModes(t, []int64{11, 16}, []declMode{declStatic, declSymbolic}, func(t *testing.T, opset int64, mode declMode) {
		for _, axis := range []int64{0, 1} {
			g := newTestGraph(t, opset, dtype.Float64, mode)
			data := g.param("data", i64s(3, 4), nil)
			ind := g.intInput("ind", i64s(3, 4), []int64{0, 2, 1, 2, 2, 2, 0, 1, 1, 0, 2, 2})
			g.check(g.node("GatherElements", []string{data, ind}, graph.AttrInt("axis", axis)))
		}
	})
}

// TestSlicePaths: a constant Slice of static dims is undone with Pad, any
// other with the index scatter.
func TestSlicePaths(t *testing.T) {
	for _, c := range []struct {
		mode declMode
		want string
	}{{declStatic, "Pad"}, {declSymbolic, "ScatterElements"}} {
		g := newTestGraph(t, 13, dtype.Float64, c.mode)
		x := g.param("x", i64s(3, 4), nil)
		y := g.node("Slice", []string{x, g.ints(i64s(1), 1), g.ints(i64s(1), 3), g.ints(i64s(1), -1)})
		tm, err := Build(g.m, g.node("ReduceSum", []string{y}, graph.AttrInt("keepdims", 0)), g.params)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, n := range tm.Graph().Node {
			found = found || n.OpType == c.want
		}
		if !found {
			t.Errorf("%s: no %s in the training graph", c.mode, c.want)
		}
	}
}

func TestPadTile(t *testing.T) {
	requireORT(t)
	forModes(t, []int64{11, 17}, allModes, func(t *testing.T, opset int64, mode declMode) {
		t.Run("Pad", func(t *testing.T) {
			g := newTestGraph(t, opset, dtype.Float64, mode)
			x := g.param("x", i64s(2, 3), nil)
			g.check(g.node("Pad", []string{x, g.ints(i64s(4), 1, 0, 2, 3), g.floats(nil, 0.5)}))
		})
		t.Run("Tile", func(t *testing.T) {
			g := newTestGraph(t, opset, dtype.Float64, mode)
			x := g.param("x", i64s(2, 1, 3), nil)
			g.check(g.node("Tile", []string{x, g.ints(i64s(3), 2, 3, 1)}))
		})
	})
}
