package autodiff

import (
	"fmt"
	"strings"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/graph"
	"github.com/peftonnx/peftonnx/graph/onnxpb"
)

// unpackCodes emits the codes of packed [rows, m] uint8 bytes (MatMulNBits'
// weights and zero points, see package quant) as [rows, m·8/bits], low
// bits first, where rows is a [1] int64 tensor holding the row count.
//
// From opset 11 on, the codes stay uint8, one byte a code: code j of byte
// x is (x >> j·bits) & (2^bits − 1) with BitwiseAnd (opset 18), else
// (x << (8 − (j+1)·bits)) >> (8 − bits), the left shift dropping the bits
// above the code (uint8 wraps); the codes of a byte are then laid side
// by side by a Concat of [rows, m, 1] pieces. (One BitShift of x
// [rows, m, 1] by [8/bits] amounts would lay them so by itself, but ONNX
// Runtime's broadcast over 8/bits elements at a time is several times
// slower than the Concat.) Before BitShift, the codes are float32, each
// floor(x / 2^(j·bits)) mod 2^bits worked out in float ops (exact:
// x < 256).
func (e *emitter) unpackCodes(packed, rows string, bits int) string {
	per := int64(8 / bits)
	if per == 1 {
		return packed
	}
	shift := func(x string, by int64, dir string) string {
		if by == 0 {
			return x
		}
		return e.op("BitShift", []string{x, e.bytes(nil, byte(by))}, graph.AttrString("direction", dir))
	}
	var parts []string
	for j := range per {
		b := int64(bits)
		var c string
		switch {
		case e.opset >= 18:
			c = shift(packed, j*b, "RIGHT")
			if j < per-1 {
				c = e.op("BitwiseAnd", []string{c, e.bytes(nil, byte(1<<bits-1))})
			}
		case e.opset >= 11:
			c = shift(shift(packed, 8-(j+1)*b, "LEFT"), 8-b, "RIGHT")
		default:
			x := e.cast(packed, dtype.Float32)
			base := e.scalar(float64(int64(1)<<bits), dtype.Float32)
			c = x
			if j > 0 {
				c = e.op("Floor", []string{e.div(x, e.scalar(float64(int64(1)<<(j*b)), dtype.Float32))})
			}
			if j < per-1 {
				c = e.sub(c, e.mul(e.op("Floor", []string{e.div(c, base)}), base))
			}
		}
		parts = append(parts, e.unsqueeze(c, -1))
	}
	return e.op("Reshape", []string{e.op("Concat", parts, graph.AttrInt("axis", -1)), e.concatInts(rows, e.ints(-1))})
}

// bytes returns a uint8 constant of shape dims (nil: a scalar) holding
// vals, named after them (u8_4_0 for bytes([]int64{2}, 4, 0)).
func (e *emitter) bytes(dims []int64, vals ...byte) string {
	var name strings.Builder
	name.WriteString("u8")
	for _, v := range vals {
		fmt.Fprintf(&name, "_%d", v)
	}
	t := &onnxpb.TensorProto{DataType: int32(dtype.Uint8), Dims: dims, RawData: append([]byte(nil), vals...)}
	return e.b.Constant(name.String(), t)
}
