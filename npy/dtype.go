package npy

// DType is the element type of an Array.
type DType int

// The element types that .npy files may hold here. The zero DType is
// invalid.
const (
	Bool DType = iota + 1
	Int8
	Uint8
	Int32
	Int64
	Float16
	Float32
	Float64
	Int16
	Uint16
	Uint32
	Uint64
)

var dtypeInfo = [...]struct {
	name  string
	descr string
	size  int
}{
	Bool:    {"bool", "|b1", 1},
	Int8:    {"int8", "|i1", 1},
	Uint8:   {"uint8", "|u1", 1},
	Int32:   {"int32", "<i4", 4},
	Int64:   {"int64", "<i8", 8},
	Float16: {"float16", "<f2", 2},
	Float32: {"float32", "<f4", 4},
	Float64: {"float64", "<f8", 8},
	Int16:   {"int16", "<i2", 2},
	Uint16:  {"uint16", "<u2", 2},
	Uint32:  {"uint32", "<u4", 4},
	Uint64:  {"uint64", "<u8", 8},
}

func (d DType) valid() bool { return d > 0 && int(d) < len(dtypeInfo) }

// String returns the NumPy name of d, such as "float32".
func (d DType) String() string {
	if !d.valid() {
		return "invalid"
	}
	return dtypeInfo[d].name
}

// Descr returns the dtype descriptor that an .npy header holds, such as
// "<f4".
func (d DType) Descr() string {
	if !d.valid() {
		return ""
	}
	return dtypeInfo[d].descr
}

// Size returns the size in bytes of one element, or 0 for an invalid DType.
func (d DType) Size() int {
	if !d.valid() {
		return 0
	}
	return dtypeInfo[d].size
}

// ParseDescr returns the DType of a header's descriptor. One-byte types are
// accepted with any byte-order mark ('|u1', '<u1'); wider ones must be
// little-endian ('<'). Big-endian ('>') descriptors get an error that says so.
func ParseDescr(descr string) (DType, error) {
	if len(descr) < 2 {
		return 0, errorf("unsupported dtype %q", descr)
	}
	order, kind := descr[0], descr[1:]
	for d := Bool; d.valid(); d++ {
		if kind != d.Descr()[1:] {
			continue
		}
		switch {
		case d.Size() == 1 && (order == '|' || order == '<' || order == '>' || order == '='):
			return d, nil
		case order == '<':
			return d, nil
		case order == '>':
			return 0, errorf("big-endian dtype %q is not supported; convert it with arr.astype('%s')", descr, d.Descr())
		}
		break
	}
	return 0, errorf("unsupported dtype %q (supported: <f2 <f4 <f8 |i1 <i2 <i4 <i8 |u1 <u2 <u4 <u8 |b1)", descr)
}
