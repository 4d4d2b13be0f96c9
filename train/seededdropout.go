package train

import (
	"github.com/peftonnx/peftonnx/graph/onnxpb"
	"hash/fnv"
	"strings"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
)

// DropoutUniformSuffix ends the name of the graph input that feeds a LoRA
// module's dropout its uniform draws (SeedLoRADropout):
// <module>.lora_dropout_uniform.
const DropoutUniformSuffix = ".lora_dropout_uniform"

// DropoutDraws says which draws a training batch's seeded LoRA dropout
// takes (Options.SeededDropout): those of micro-batch Micro of the run
// (step × GradAccum + i, counted from 0), for the batch's rows from
// FirstRow of the global batch on (a data-parallel rank's shard starts
// past the others'). The draws depend on nothing else: not on the rank,
// the padding or the tensor-parallel degree.
type DropoutDraws struct {
	Seed     uint64
	Micro    int
	FirstRow int
}

// SeedLoRADropout replaces every LoRA dropout of m, a Dropout node whose
// output is multiplied by a lora_A factor, with the same inverted dropout
// on uniform draws that the caller feeds: the graph input
// <module>.lora_dropout_uniform, float32 [batch, sequence, in] like the
// layer's input, drops an input where its draw is below the rate (0 when
// the training-mode input is false, so that evaluation drops nothing).
// It returns the modules, in m's order. A LoRA dropout whose input is not
// [batch, sequence, in] cannot be given its draws, and is an error.
func SeedLoRADropout(m *graph.Model) ([]string, error) {
	var drops []loraDropout
	for _, n := range m.Graph().Node {
		if n.OpType != "Dropout" || (n.Domain != "" && n.Domain != "ai.onnx") || len(n.Output) == 0 {
			continue
		}
		for _, c := range m.Consumers(n.Output[0]) {
			if c.OpType != "MatMul" || len(c.Input) != 2 || c.Input[0] != n.Output[0] {
				continue
			}
			module, ok := strings.CutSuffix(c.Input[1], ".lora_A.weight")
			if !ok {
				continue
			}
			d, err := newLoRADropout(m, n, module, c.Input[1])
			if err != nil {
				return nil, errorf("seeded dropout: %s: %w", module, err)
			}
			drops = append(drops, d)
			break
		}
	}
	if len(drops) == 0 {
		return nil, nil
	}
	zero := graph.NewFloat32Tensor(m.UniqueName("seeded_dropout_zero"), dtype.Float32, nil, []float32{0})
	one := graph.NewFloat32Tensor(m.UniqueName("seeded_dropout_one"), dtype.Float32, nil, []float32{1})
	m.AddInitializer(zero)
	m.AddInitializer(one)
	modules := make([]string, 0, len(drops))
	for _, d := range drops {
		m.RemoveNodes(d.node)
		uniform := d.module + DropoutUniformSuffix
		if m.HasName(uniform) {
			return nil, errorf("seeded dropout: the model already has a value %q", uniform)
		}
		m.AddInput(graph.TensorInfo(uniform, dtype.Float32, []int64{-1, -1, d.in}))
		at := "/" + d.module + "/seeded_dropout/"
		v := func(s string) string { return m.UniqueName(d.module + ".seeded_dropout." + s) }
		rate, drop, keep, keepT, left, scale, scaleT, kept := v("rate"), v("drop"), v("keep"), v("keep_t"), v("left"), v("scale"), v("scale_t"), v("kept")
		x, ratio, training := d.node.Input[0], d.node.Input[1], d.node.Input[2]
		m.NewNode("Where", at+"Where", []string{training, ratio, zero.Name}, []string{rate})
		m.NewNode("Less", at+"Less", []string{uniform, rate}, []string{drop})
		m.NewNode("Not", at+"Not", []string{drop}, []string{keep})
		m.NewNode("Cast", at+"Cast", []string{keep}, []string{keepT}, graph.AttrInt("to", int64(d.dtype)))
		m.NewNode("Sub", at+"Sub", []string{one.Name, rate}, []string{left})
		m.NewNode("Div", at+"Div", []string{one.Name, left}, []string{scale})
		m.NewNode("Cast", at+"CastScale", []string{scale}, []string{scaleT}, graph.AttrInt("to", int64(d.dtype)))
		m.NewNode("Mul", at+"Mul", []string{x, keepT}, []string{kept})
		m.NewNode("Mul", at+"MulScale", []string{kept, scaleT}, []string{d.node.Output[0]})
		modules = append(modules, d.module)
	}
	if err := m.SortNodes(); err != nil {
		return nil, errorf("seeded dropout: %w", err)
	}
	return modules, nil
}

// loraDropout is one LoRA module's Dropout node, the width of its input
// (lora_A's rows) and the branch's element type.
type loraDropout struct {
	node   *onnxpb.NodeProto
	module string
	in     int64
	dtype  dtype.Type
}

// newLoRADropout describes the dropout n of module, whose lora_A factor
// is a.
func newLoRADropout(m *graph.Model, n *onnxpb.NodeProto, module, a string) (loraDropout, error) {
	var dims []int64
	var dt dtype.Type
	if init := m.Initializer(a); init != nil {
		dims, dt = init.Dims, graph.TypeOf(init)
	} else if in := m.Input(a); in != nil {
		dt, dims, _ = graph.ValueShape(in)
	}
	if len(dims) != 2 || dims[0] <= 0 {
		return loraDropout{}, errorf("no 2-D lora_A factor of a known size")
	}
	if len(n.Input) < 3 || n.Input[1] == "" || n.Input[2] == "" {
		return loraDropout{}, errorf("its Dropout has no rate or no training-mode input")
	}
	if r := m.Initializer(n.Input[1]); r == nil || graph.TypeOf(r) != dtype.Float32 {
		return loraDropout{}, errorf("its Dropout's rate is not a float32 constant")
	}
	if len(n.Output) > 1 && n.Output[1] != "" && len(m.Consumers(n.Output[1])) > 0 {
		return loraDropout{}, errorf("its Dropout's mask is read")
	}
	return loraDropout{node: n, module: module, in: dims[0], dtype: dt}, nil
}

// Uniforms returns the uniform draws in [0, 1) that module's seeded
// dropout takes on a batch of rows × seq positions, for the columns
// firstCol … firstCol+cols-1 of the layer's input (all of them on one
// process; a tensor-parallel rank that holds a run of the input's columns
// takes that run), [rows, seq, cols] in row-major order. Each draw is a
// function of the seed, the micro-batch, the module, and the row of the
// global batch, the position and the column it drops.
func (d DropoutDraws) Uniforms(module string, rows, seq, firstCol, cols int) []float32 {
	h := fnv.New64a()
	h.Write([]byte(module))
	base := deriveSeed(deriveSeed(d.Seed^0x5eed_d709_0a7c_1e55, h.Sum64()), uint64(d.Micro))
	out := make([]float32, rows*seq*cols)
	for r := range rows {
		for p := range seq {
			k := mix64(base ^ mix64(uint64(d.FirstRow+r)<<32|uint64(p)))
			row := out[(r*seq+p)*cols : (r*seq+p+1)*cols]
			for c := range row {
				row[c] = float32(mix64(k+uint64(firstCol+c)*0x9e3779b97f4a7c15)>>40) / (1 << 24)
			}
		}
	}
	return out
}
