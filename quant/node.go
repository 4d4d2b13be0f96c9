package quant

import (
	"slices"
	"strconv"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

// Domain and OpType name ONNX Runtime's contrib operator.
const (
	Domain = "com.microsoft"
	OpType = "MatMulNBits"
)

// The inputs of a MatMulNBits node, by position.
const (
	InputA = iota
	InputB
	InputScales
	InputZeroPoints
	InputGIdx
	InputBias
)

// MaxAccuracyLevel is the largest accuracy_level: the attribute is 0
// (unset), 1 (fp32), 2 (fp16), 3 (bf16) or 4 (int8: ONNX Runtime may
// quantize A to int8 in blocks of block_size).
const MaxAccuracyLevel = 4

// IsNode reports whether n is a com.microsoft MatMulNBits node.
func IsNode(n *onnxpb.NodeProto) bool {
	return n.OpType == OpType && n.Domain == Domain
}

// LayoutOf reads the K, N, bits and block_size attributes of a MatMulNBits
// node and checks them. A node without bits has 4, the attribute's
// default in ONNX Runtime's schema.
func LayoutOf(n *onnxpb.NodeProto) (Layout, error) {
	if !IsNode(n) {
		return Layout{}, errorf("node %q is %s, not %s:%s", n.Name, opName(n), Domain, OpType)
	}
	l := Layout{
		K:         int(graph.IntAttr(n, "K", 0)),
		N:         int(graph.IntAttr(n, "N", 0)),
		Bits:      int(graph.IntAttr(n, "bits", 4)),
		BlockSize: int(graph.IntAttr(n, "block_size", 0)),
	}
	if err := l.check(); err != nil {
		return Layout{}, errorf("node %q: %w", n.Name, err)
	}
	return l, nil
}

// AccuracyLevelOf returns a MatMulNBits node's accuracy_level (0 where it
// is not set).
func AccuracyLevelOf(n *onnxpb.NodeProto) int {
	return int(graph.IntAttr(n, "accuracy_level", 0))
}

func opName(n *onnxpb.NodeProto) string {
	if n.Domain == "" || n.Domain == "ai.onnx" {
		return n.OpType
	}
	return n.Domain + ":" + n.OpType
}

// TensorNames names the initializers that hold one Weight; ZeroPoints and
// GIdx are used only where the weight has them.
type TensorNames struct {
	B, Scales, ZeroPoints, GIdx string
}

// BuilderNames returns the names that ONNX Runtime's MatMulNBits quantizer,
// which the onnxruntime-genai model builder runs, gives the tensors that
// replace the float weight called weight: weight_Q4 (_Q2, _Q8 for other
// widths), weight_scales and weight_zero_points, and weight_g_idx for a
// g_idx it never writes. For "model.layers.0.attn.q_proj.MatMul.weight"
// the packed weight is "model.layers.0.attn.q_proj.MatMul.weight_Q4".
func BuilderNames(weight string, bits int) TensorNames {
	return TensorNames{
		B:          weight + "_Q" + strconv.Itoa(bits),
		Scales:     weight + "_scales",
		ZeroPoints: weight + "_zero_points",
		GIdx:       weight + "_g_idx",
	}
}

// BuilderNodeName returns the name that ONNX Runtime's quantizer gives the
// MatMulNBits node that replaces the MatMul called matmul:
// "/model/layers.0/attn/q_proj/MatMul" becomes
// "/model/layers.0/attn/q_proj/MatMul_Q4". An unnamed node stays unnamed.
func BuilderNodeName(matmul string, bits int) string {
	if matmul == "" {
		return ""
	}
	return matmul + "_Q" + strconv.Itoa(bits)
}

// Tensors returns w's initializers under names: B as uint8 [N, KBlocks,
// BlobSize]; scales of ScaleType, [N, KBlocks], the shape that ONNX
// Runtime's operator spec gives; the zero points where w has them, packed
// uint8 [N, ZeroPointRowSize] or of ScaleType [N, KBlocks]; and g_idx as
// int32 [len(GIdx)] where w has one.
func (w *Weight) Tensors(names TensorNames) ([]*onnxpb.TensorProto, error) {
	if err := w.Validate(); err != nil {
		return nil, err
	}
	out := []*onnxpb.TensorProto{
		{Name: names.B, DataType: int32(dtype.Uint8), Dims: w.BShape(), RawData: slices.Clone(w.B)},
		graph.NewFloat32Tensor(names.Scales, w.ScaleType, w.ScalesShape(), w.Scales),
	}
	switch {
	case w.ZeroPoints != nil:
		out = append(out, &onnxpb.TensorProto{Name: names.ZeroPoints, DataType: int32(dtype.Uint8), Dims: w.ZeroPointsShape(), RawData: slices.Clone(w.ZeroPoints)})
	case w.FloatZeroPoints != nil:
		out = append(out, graph.NewFloat32Tensor(names.ZeroPoints, w.ScaleType, w.ScalesShape(), w.FloatZeroPoints))
	}
	if w.GIdx != nil {
		b := make([]byte, 4*len(w.GIdx))
		for i, g := range w.GIdx {
			u := uint32(g)
			b[4*i], b[4*i+1], b[4*i+2], b[4*i+3] = byte(u), byte(u>>8), byte(u>>16), byte(u>>24)
		}
		out = append(out, &onnxpb.TensorProto{Name: names.GIdx, DataType: int32(dtype.Int32), Dims: []int64{int64(len(w.GIdx))}, RawData: b})
	}
	return out, nil
}

// NodeOptions are the parts of a MatMulNBits node that are not the weight.
type NodeOptions struct {
	// Name is the node's name; A and Y its input and output values.
	Name, A, Y string
	// Bias is a value of ScaleType and shape [N] added to the output, or "".
	Bias string
	// AccuracyLevel is the accuracy_level attribute, 0 to 4; 0 leaves the
	// attribute out, as ONNX Runtime's quantizer does.
	AccuracyLevel int
}

// Node returns a MatMulNBits node that multiplies o.A by w, whose tensors
// are called names: Y = A·W (+ bias). Inputs that w does not use are
// empty names, and trailing ones are left out.
func (w *Weight) Node(names TensorNames, o NodeOptions) (*onnxpb.NodeProto, error) {
	if err := w.Layout.Validate(); err != nil {
		return nil, err
	}
	if o.AccuracyLevel < 0 || o.AccuracyLevel > MaxAccuracyLevel {
		return nil, errorf("accuracy level %d: want 0 to %d", o.AccuracyLevel, MaxAccuracyLevel)
	}
	in := []string{o.A, names.B, names.Scales, "", "", o.Bias}
	if !w.Symmetric() {
		in[InputZeroPoints] = names.ZeroPoints
	}
	if w.GIdx != nil {
		in[InputGIdx] = names.GIdx
	}
	for len(in) > InputScales+1 && in[len(in)-1] == "" {
		in = in[:len(in)-1]
	}
	return &onnxpb.NodeProto{Name: o.Name, OpType: OpType, Domain: Domain, Input: in, Output: []string{o.Y}, Attribute: w.Layout.Attributes(o.AccuracyLevel)}, nil
}

// Attributes returns the attributes of a MatMulNBits node of layout l and
// accuracy_level accuracy: K, N, bits and block_size, and accuracy_level
// unless it is 0.
func (l Layout) Attributes(accuracy int) []*onnxpb.AttributeProto {
	attrs := []*onnxpb.AttributeProto{
		graph.AttrInt("K", int64(l.K)),
		graph.AttrInt("N", int64(l.N)),
		graph.AttrInt("bits", int64(l.Bits)),
		graph.AttrInt("block_size", int64(l.BlockSize)),
	}
	if accuracy != 0 {
		attrs = append(attrs, graph.AttrInt("accuracy_level", int64(accuracy)))
	}
	return attrs
}

// ReadNode returns the weight that MatMulNBits node n of m multiplies by,
// from its initializers. It reads scales and zero points in both of the
// shapes that ONNX Runtime accepts: [N, KBlocks] (and [N,
// ZeroPointRowSize] for packed zero points), which the operator spec
// gives, and the flat [N·KBlocks] (and [N·ZeroPointRowSize]) that ONNX
// Runtime's quantizer writes. The returned slices are copies.
func ReadNode(m *graph.Model, n *onnxpb.NodeProto) (*Weight, error) {
	l, err := LayoutOf(n)
	if err != nil {
		return nil, err
	}
	w := &Weight{Layout: l}
	input := func(i int, what string) (*onnxpb.TensorProto, error) {
		if i >= len(n.Input) || n.Input[i] == "" {
			return nil, nil
		}
		t := m.Initializer(n.Input[i])
		if t == nil || m.Input(n.Input[i]) != nil {
			return nil, errorf("node %q: %s %q is not a constant initializer", n.Name, what, n.Input[i])
		}
		return t, nil
	}
	shapeErr := func(t *onnxpb.TensorProto, what string, want ...[]int64) error {
		return errorf("node %q: %s %q has type %s and shape %v, want %v", n.Name, what, t.Name, graph.TypeOf(t), t.Dims, want)
	}
	nb := int64(l.N * l.KBlocks())

	b, err := input(InputB, "B")
	if err != nil {
		return nil, err
	}
	if b == nil {
		return nil, errorf("node %q has no B input", n.Name)
	}
	if graph.TypeOf(b) != dtype.Uint8 || !slices.Equal(b.Dims, l.BShape()) {
		return nil, shapeErr(b, "B", l.BShape())
	}
	if w.B, err = m.TensorBytes(b); err != nil {
		return nil, errorf("node %q: %w", n.Name, err)
	}
	w.B = slices.Clone(w.B)

	s, err := input(InputScales, "scales")
	if err != nil {
		return nil, err
	}
	if s == nil {
		return nil, errorf("node %q has no scales input", n.Name)
	}
	if !isScaleType(graph.TypeOf(s)) || !oneOfShapes(s.Dims, []int64{nb}, l.ScalesShape()) {
		return nil, shapeErr(s, "scales", l.ScalesShape(), []int64{nb})
	}
	w.ScaleType = graph.TypeOf(s)
	if w.Scales, err = m.Float32s(s); err != nil {
		return nil, errorf("node %q: %w", n.Name, err)
	}

	z, err := input(InputZeroPoints, "zero_points")
	if err != nil {
		return nil, err
	}
	switch {
	case z == nil:
	case graph.TypeOf(z) == dtype.Uint8:
		row := int64(l.ZeroPointRowSize())
		if !oneOfShapes(z.Dims, []int64{int64(l.N) * row}, l.ZeroPointsShape()) {
			return nil, shapeErr(z, "zero_points", l.ZeroPointsShape(), []int64{int64(l.N) * row})
		}
		zb, err := m.TensorBytes(z)
		if err != nil {
			return nil, errorf("node %q: %w", n.Name, err)
		}
		w.ZeroPoints = slices.Clone(zb)
	case z.DataType == s.DataType:
		if !oneOfShapes(z.Dims, []int64{nb}, l.ScalesShape()) {
			return nil, shapeErr(z, "zero_points", l.ScalesShape(), []int64{nb})
		}
		if w.FloatZeroPoints, err = m.Float32s(z); err != nil {
			return nil, errorf("node %q: %w", n.Name, err)
		}
	default:
		return nil, errorf("node %q: zero_points %q has type %s: want uint8 or the scales' type %s", n.Name, z.Name, graph.TypeOf(z), graph.TypeOf(s))
	}

	g, err := input(InputGIdx, "g_idx")
	if err != nil {
		return nil, err
	}
	if g != nil {
		if graph.TypeOf(g) != dtype.Int32 || len(g.Dims) != 1 {
			return nil, shapeErr(g, "g_idx", []int64{int64(l.K)}, []int64{int64(l.PaddedK())})
		}
		if w.GIdx, err = m.Int32s(g); err != nil {
			return nil, errorf("node %q: %w", n.Name, err)
		}
	}
	if err := w.check(); err != nil {
		return nil, errorf("node %q: %w", n.Name, err)
	}
	return w, nil
}

// oneOfShapes reports whether dims equals one of shapes.
func oneOfShapes(dims []int64, shapes ...[]int64) bool {
	for _, s := range shapes {
		if slices.Equal(dims, s) {
			return true
		}
	}
	return false
}
