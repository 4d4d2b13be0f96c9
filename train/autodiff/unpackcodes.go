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
// From opset 11 on, the codes stay uint8, one byte a code, made by two
// BitShifts of the bytes: code j of byte x is (x << (8 − (j+1)·bits)) >>
// (8 − bits), the left shift dropping the bits above the code (uint8
// wraps), and the first shift, of x [rows, m, 1] by [8/bits] amounts,
// lays the codes of a byte side by side, so no Concat interleaves them.
// Before BitShift, the codes are float32, each floor(x / 2^(j·bits)) mod
// 2^bits worked out in float ops (exact: x < 256).
func (e *emitter) unpackCodes(packed, rows string, bits int) string {
	per := int64(8 / bits)
	if per == 1 {
		return packed
	}
	if e.opset >= 11 {
		left := make([]byte, per)
		for j := range per {
			left[j] = byte(8 - (j+1)*int64(bits))
		}
		c := e.op("BitShift", []string{e.unsqueeze(packed, -1), e.bytes([]int64{per}, left...)}, graph.AttrString("direction", "LEFT"))
		c = e.op("BitShift", []string{c, e.bytes(nil, byte(8-bits))}, graph.AttrString("direction", "RIGHT"))
		return e.op("Reshape", []string{c, e.concatInts(rows, e.ints(-1))})
	}
	x := e.cast(packed, dtype.Float32)
	base := float64(int64(1) << bits)
	var parts []string
	for j := range per {
		c := x
		if j > 0 {
			c = e.op("Floor", []string{e.div(x, e.scalar(float64(int64(1)<<(j*int64(bits))), dtype.Float32))})
		}
		if j < per-1 {
			c = e.sub(c, e.mul(e.op("Floor", []string{e.div(c, e.scalar(base, dtype.Float32))}), e.scalar(base, dtype.Float32)))
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
