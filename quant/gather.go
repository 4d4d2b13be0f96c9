package quant

import (
	"slices"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

// GatherOpType names ONNX Runtime's contrib operator (domain Domain) that
// gathers rows of a block-quantized table and dequantizes them: the int4
// token embedding of the onnxruntime-genai model builder's models. With
// uint8 data it follows MatMulNBits' conventions: codes packed low bits
// first, one scale per block of block_size values along the quantized
// axis, packed uint8 zero points (but not starting each row on a byte),
// and 2^(bits−1) where there are none.
const GatherOpType = "GatherBlockQuantized"

// The inputs of a GatherBlockQuantized node, by position.
const (
	GatherInputData = iota
	GatherInputIndices
	GatherInputScales
	GatherInputZeroPoints
)

// IsGatherNode reports whether n is a com.microsoft GatherBlockQuantized
// node.
func IsGatherNode(n *onnxpb.NodeProto) bool {
	return n.OpType == GatherOpType && n.Domain == Domain
}

// GatherBits reports whether bits is a width GatherBlockQuantized takes
// for uint8 data: 4 or 8.
func GatherBits(bits int) bool { return bits == 4 || bits == 8 }

// checkGather reports why w cannot be the table of a GatherBlockQuantized
// node: its rows are w's N columns, each of K values cut into blocks, so
// K must fill whole blocks (the data tensor has no room for padding) and
// the width be one the operator takes.
func (w *Weight) checkGather() error {
	if err := w.Validate(); err != nil {
		return err
	}
	if !GatherBits(w.Bits) {
		return errorf("%d bits: %s takes 4 or 8", w.Bits, GatherOpType)
	}
	if w.K%w.BlockSize != 0 {
		return errorf("rows of %d values are not whole blocks of %d: %s has no padding", w.K, w.BlockSize, GatherOpType)
	}
	if w.FloatZeroPoints != nil || w.GIdx != nil {
		return errorf("%s takes packed zero points and no g_idx", GatherOpType)
	}
	return nil
}

// GatherDataShape is the shape of the data input of a table that w
// holds: [N, K·Bits/8] bytes, row n being column n of w.
func (l Layout) GatherDataShape() []int64 {
	return []int64{int64(l.N), int64(l.K * l.Bits / 8)}
}

// GatherTensors returns the initializers of w as the table of a
// GatherBlockQuantized node: data uint8 [N, K·Bits/8], scales of
// ScaleType [N, KBlocks] and, where w has them, packed zero points uint8
// [N, ZeroPointRowSize], packed in one run across rows (see
// flatZeroPoints: ONNX Runtime 1.24's CPU kernel reads them so). Row n of the table is column n of w, so a
// [V, H] embedding is quantized as the H×V weight of its transpose.
func (w *Weight) GatherTensors(names TensorNames) ([]*onnxpb.TensorProto, error) {
	if err := w.checkGather(); err != nil {
		return nil, err
	}
	out := []*onnxpb.TensorProto{
		{Name: names.B, DataType: int32(dtype.Uint8), Dims: w.GatherDataShape(), RawData: slices.Clone(w.B)},
		graph.NewFloat32Tensor(names.Scales, w.ScaleType, w.ScalesShape(), w.Scales),
	}
	if w.ZeroPoints != nil {
		out = append(out, &onnxpb.TensorProto{Name: names.ZeroPoints, DataType: int32(dtype.Uint8), Dims: w.ZeroPointsShape(), RawData: w.flatZeroPoints()})
	}
	return out, nil
}

// GatherNode returns a GatherBlockQuantized node called name that reads
// the rows of w (its tensors called names) that indices pick into y:
// gather_axis 0, quantize_axis 1, w's block size and bits.
func (w *Weight) GatherNode(names TensorNames, name, indices, y string) (*onnxpb.NodeProto, error) {
	if err := w.checkGather(); err != nil {
		return nil, err
	}
	in := []string{names.B, indices, names.Scales}
	if w.ZeroPoints != nil {
		in = append(in, names.ZeroPoints)
	}
	return &onnxpb.NodeProto{Name: name, OpType: GatherOpType, Domain: Domain, Input: in, Output: []string{y}, Attribute: []*onnxpb.AttributeProto{
		graph.AttrInt("gather_axis", 0),
		graph.AttrInt("quantize_axis", 1),
		graph.AttrInt("block_size", int64(w.BlockSize)),
		graph.AttrInt("bits", int64(w.Bits)),
	}}, nil
}

// GatherRowSize returns the number of values in a row of the table of
// GatherBlockQuantized node n whose data input has shape data: the last
// dim times the codes a byte holds for uint8 data (bits, default 4), or
// the last dim for int4 and uint4 data. It is 0 where data is unknown.
func GatherRowSize(n *onnxpb.NodeProto, data []int64, elem dtype.Type) int64 {
	if len(data) == 0 || data[len(data)-1] <= 0 {
		return 0
	}
	d := data[len(data)-1]
	if elem == dtype.Uint8 {
		d *= 8 / max(1, graph.IntAttr(n, "bits", 4))
	}
	return d
}

// flatZeroPoints returns w's zero points packed as GatherBlockQuantized
// reads them: block j of row n is zero point n·KBlocks + j of one run
// across rows, low bits first, where MatMulNBits starts each row on a
// byte (the two differ for 4 bits and an odd KBlocks). The bytes past
// the run, to the size of w.ZeroPointsShape, are zero.
func (w *Weight) flatZeroPoints() []byte {
	kb := w.KBlocks()
	out := make([]byte, w.N*w.ZeroPointRowSize())
	for n := range w.N {
		for j := range kb {
			bit := (n*kb + j) * w.Bits
			out[bit/8] |= uint8(w.zeroPoint(n, j)) << (bit % 8)
		}
	}
	return out
}

// ReadGatherNode returns the table that GatherBlockQuantized node n of m
// gathers from, as the weight of its transpose (GatherTensors' inverse):
// uint8 data [N, K·bits/8] of initializers, gather_axis 0 and
// quantize_axis 1, scales [N, KBlocks] and packed zero points where n has
// them. The returned slices are copies.
func ReadGatherNode(m *graph.Model, n *onnxpb.NodeProto) (*Weight, error) {
	if !IsGatherNode(n) {
		return nil, errorf("node %q is %s, not %s:%s", n.Name, opName(n), Domain, GatherOpType)
	}
	if graph.IntAttr(n, "gather_axis", 0) != 0 || graph.IntAttr(n, "quantize_axis", 1) != 1 {
		return nil, errorf("node %q: gather_axis %d and quantize_axis %d, want 0 and 1", n.Name, graph.IntAttr(n, "gather_axis", 0), graph.IntAttr(n, "quantize_axis", 1))
	}
	init := func(i int) *onnxpb.TensorProto {
		if i >= len(n.Input) || n.Input[i] == "" || m.Input(n.Input[i]) != nil {
			return nil
		}
		return m.Initializer(n.Input[i])
	}
	data, scales := init(GatherInputData), init(GatherInputScales)
	if data == nil || scales == nil || graph.TypeOf(data) != dtype.Uint8 || len(data.Dims) != 2 {
		return nil, errorf("node %q: data and scales must be initializers, data uint8 [N, K·bits/8]", n.Name)
	}
	bits := int(graph.IntAttr(n, "bits", 4))
	l := Layout{K: int(data.Dims[1]) * 8 / max(bits, 1), N: int(data.Dims[0]), Bits: bits, BlockSize: int(graph.IntAttr(n, "block_size", 128))}
	if err := l.check(); err != nil {
		return nil, errorf("node %q: %w", n.Name, err)
	}
	w := &Weight{Layout: l, ScaleType: graph.TypeOf(scales)}
	b, err := m.TensorBytes(data)
	if err != nil {
		return nil, errorf("node %q: %w", n.Name, err)
	}
	w.B = slices.Clone(b)
	if !slices.Equal(scales.Dims, l.ScalesShape()) {
		return nil, errorf("node %q: scales %q have shape %v, want %v", n.Name, scales.Name, scales.Dims, l.ScalesShape())
	}
	if w.Scales, err = m.Float32s(scales); err != nil {
		return nil, errorf("node %q: %w", n.Name, err)
	}
	if len(n.Input) > GatherInputZeroPoints && n.Input[GatherInputZeroPoints] != "" {
		z := init(GatherInputZeroPoints)
		if z == nil || graph.TypeOf(z) != dtype.Uint8 {
			return nil, errorf("node %q: zero_points must be a uint8 initializer", n.Name)
		}
		flat, err := m.TensorBytes(z)
		if err != nil {
			return nil, errorf("node %q: %w", n.Name, err)
		}
		kb := l.KBlocks()
		if len(flat)*8 < l.N*kb*bits {
			return nil, errorf("node %q: %d bytes of zero points, want %d codes", n.Name, len(flat), l.N*kb)
		}
		w.ZeroPoints = make([]byte, l.N*l.ZeroPointRowSize())
		for r := range l.N {
			for j := range kb {
				bit := (r*kb + j) * bits
				w.setZeroPoint(r, j, float64((flat[bit/8]>>(bit%8))&uint8(l.MaxCode())))
			}
		}
	}
	if err := w.checkGather(); err != nil {
		return nil, errorf("node %q: %w", n.Name, err)
	}
	return w, nil
}
