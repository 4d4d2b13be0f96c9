package npy

import (
	"fmt"

	"github.com/peftonnx/peftonnx/dtype"
)

// supported reports whether .npy files here may hold elements of type t:
// the types of the table in the package comment.
func supported(t dtype.Type) bool {
	switch t {
	case dtype.Bool, dtype.Int8, dtype.Uint8, dtype.Int16, dtype.Uint16, dtype.Int32, dtype.Uint32,
		dtype.Int64, dtype.Uint64, dtype.Float16, dtype.Float32, dtype.Float64:
		return true
	}
	return false
}

// parseDescr returns the element type of a header's descriptor. One-byte
// types are accepted with any byte-order mark ('|u1', '<u1'); wider ones
// must be little-endian ('<'). Big-endian ('>') descriptors get an error
// that says so.
func parseDescr(descr string) (dtype.Type, error) {
	if t, ok := dtype.ParseDescr(descr); ok && supported(t) {
		return t, nil
	}
	if t, ok := dtype.BigEndian(descr); ok && supported(t) {
		return dtype.Undefined, fmt.Errorf("big-endian dtype %q is not supported; convert it with arr.astype('%s')", descr, t.Descr())
	}
	return dtype.Undefined, fmt.Errorf("unsupported dtype %q (supported: <f2 <f4 <f8 |i1 <i2 <i4 <i8 |u1 <u2 <u4 <u8 |b1)", descr)
}
