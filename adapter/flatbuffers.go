package adapter

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// This file holds a minimal FlatBuffers builder and reader: just what the
// .onnx_adapter schema needs (tables of int32 scalars and offsets, strings,
// vectors of scalars and of tables). The builder lays bytes out exactly as
// the C++ FlatBufferBuilder does (back to front, the same padding, vtables
// written after their table and shared when identical), so that a file read
// and written again comes out byte for byte the same.

// fbBuilder builds a flatbuffer from the back: data occupies buf[head:].
// Offsets handed out are distances from the end of the buffer.
type fbBuilder struct {
	buf        []byte
	head       int
	minAlign   int
	vtables    []int // offsets of the vtables written so far, oldest first
	fields     []fbField
	tableStart int
}

type fbField struct {
	voffset int // position of the field's entry in the vtable: 4 + 2·slot
	off     int // offset of the field's value
}

func newFBBuilder(sizeHint int) *fbBuilder {
	if sizeHint < 64 {
		sizeHint = 64
	}
	return &fbBuilder{buf: make([]byte, sizeHint), head: sizeHint, minAlign: 1}
}

func (b *fbBuilder) size() int { return len(b.buf) - b.head }

// reserve makes room for n more bytes in front of the data.
func (b *fbBuilder) reserve(n int) {
	if b.head >= n {
		return
	}
	used := b.size()
	newLen := 2 * len(b.buf)
	for newLen-used < n {
		newLen *= 2
	}
	nb := make([]byte, newLen)
	copy(nb[newLen-used:], b.buf[b.head:])
	b.buf, b.head = nb, newLen-used
}

func (b *fbBuilder) pad(n int) {
	b.reserve(n)
	for i := 0; i < n; i++ {
		b.head--
		b.buf[b.head] = 0
	}
}

func (b *fbBuilder) trackAlign(a int) {
	if a > b.minAlign {
		b.minAlign = a
	}
}

// paddingFor returns how many bytes bring size up to a multiple of align.
func paddingFor(size, align int) int { return (-size) & (align - 1) }

// align pads so that the next size-byte scalar lands aligned.
func (b *fbBuilder) align(size int) {
	b.trackAlign(size)
	b.pad(paddingFor(b.size(), size))
}

// preAlign pads so that after n more bytes the data is aligned to align.
func (b *fbBuilder) preAlign(n, align int) {
	if n == 0 {
		return
	}
	b.trackAlign(align)
	b.pad(paddingFor(b.size()+n, align))
}

func (b *fbBuilder) pushBytes(p []byte) {
	b.reserve(len(p))
	b.head -= len(p)
	copy(b.buf[b.head:], p)
}

func (b *fbBuilder) pushUint32(v uint32) int {
	b.align(4)
	b.reserve(4)
	b.head -= 4
	binary.LittleEndian.PutUint32(b.buf[b.head:], v)
	return b.size()
}

// pushOffset writes a uoffset pointing to off.
func (b *fbBuilder) pushOffset(off int) int {
	b.align(4)
	return b.pushUint32(uint32(b.size() - off + 4))
}

// createString writes a length-prefixed, NUL-terminated string.
func (b *fbBuilder) createString(s string) int {
	b.preAlign(len(s)+1, 4)
	b.pad(1)
	b.pushBytes([]byte(s))
	return b.pushUint32(uint32(len(s)))
}

// createVector writes a vector of count elements of elemSize bytes whose
// little-endian bytes are data, with its elements aligned to align.
func (b *fbBuilder) createVector(data []byte, count, elemSize, align int) int {
	b.preAlign(count*elemSize, 4)
	b.preAlign(count*elemSize, align)
	b.pushBytes(data)
	return b.pushUint32(uint32(count))
}

// createInt64Vector writes a vector of int64.
func (b *fbBuilder) createInt64Vector(v []int64) int {
	data := make([]byte, 8*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint64(data[8*i:], uint64(x))
	}
	return b.createVector(data, len(v), 8, 8)
}

// createOffsetVector writes a vector of offsets to tables.
func (b *fbBuilder) createOffsetVector(offs []int) int {
	b.preAlign(4*len(offs), 4)
	for i := len(offs) - 1; i >= 0; i-- {
		b.pushOffset(offs[i])
	}
	return b.pushUint32(uint32(len(offs)))
}

func (b *fbBuilder) startTable() {
	b.fields = b.fields[:0]
	b.tableStart = b.size()
}

// addInt32 adds a scalar field; like the C++ builder it leaves out values
// equal to the schema default.
func (b *fbBuilder) addInt32(slot int, v, def int32) {
	if v == def {
		return
	}
	off := b.pushUint32(uint32(v))
	b.fields = append(b.fields, fbField{4 + 2*slot, off})
}

// addOffset adds a field that points to off; 0 means absent.
func (b *fbBuilder) addOffset(slot, off int) {
	if off == 0 {
		return
	}
	pos := b.pushOffset(off)
	b.fields = append(b.fields, fbField{4 + 2*slot, pos})
}

// endTable writes the table's vtable offset and its vtable, reusing an
// identical vtable written before, and returns the table's offset.
func (b *fbBuilder) endTable() int {
	tableOff := b.pushUint32(0)
	maxV := 0
	for _, f := range b.fields {
		maxV = max(maxV, f.voffset)
	}
	vtSize := max(maxV+2, 4)
	vt := make([]byte, vtSize)
	binary.LittleEndian.PutUint16(vt, uint16(vtSize))
	binary.LittleEndian.PutUint16(vt[2:], uint16(tableOff-b.tableStart))
	for _, f := range b.fields {
		binary.LittleEndian.PutUint16(vt[f.voffset:], uint16(tableOff-f.off))
	}
	vtOff := 0
	for _, old := range b.vtables {
		p := len(b.buf) - old
		if int(binary.LittleEndian.Uint16(b.buf[p:])) == vtSize && bytes.Equal(b.buf[p:p+vtSize], vt) {
			vtOff = old
			break
		}
	}
	if vtOff == 0 {
		b.pushBytes(vt)
		vtOff = b.size()
		b.vtables = append(b.vtables, vtOff)
	}
	binary.LittleEndian.PutUint32(b.buf[len(b.buf)-tableOff:], uint32(int32(vtOff-tableOff)))
	b.fields = b.fields[:0]
	return tableOff
}

// finish writes the file identifier and the root offset, aligning the
// whole buffer, and returns the finished bytes.
func (b *fbBuilder) finish(root int, ident string) []byte {
	b.preAlign(4+len(ident), b.minAlign)
	b.pushBytes([]byte(ident))
	b.pushOffset(root)
	return b.buf[b.head:]
}

// fbReader reads a flatbuffer with bounds checks on every access.
type fbReader struct {
	buf []byte
}

// fbTable is a table located in a buffer.
type fbTable struct {
	pos    int // start of the table
	vt     int // start of its vtable
	vtSize int
	size   int // inline size of the table
}

func (r *fbReader) u32(pos int) (uint32, error) {
	if pos < 0 || pos > len(r.buf)-4 {
		return 0, fmt.Errorf("offset %d out of range of the %d-byte buffer", pos, len(r.buf))
	}
	return binary.LittleEndian.Uint32(r.buf[pos:]), nil
}

func (r *fbReader) u16(pos int) (int, error) {
	if pos < 0 || pos > len(r.buf)-2 {
		return 0, fmt.Errorf("offset %d out of range of the %d-byte buffer", pos, len(r.buf))
	}
	return int(binary.LittleEndian.Uint16(r.buf[pos:])), nil
}

// deref follows the uoffset stored at pos.
func (r *fbReader) deref(pos int) (int, error) {
	v, err := r.u32(pos)
	if err != nil {
		return 0, err
	}
	target := int64(pos) + int64(v)
	if target >= int64(len(r.buf)) {
		return 0, fmt.Errorf("offset at %d points to %d, past the end of the %d-byte buffer", pos, target, len(r.buf))
	}
	return int(target), nil
}

// table reads the table at pos and its vtable.
func (r *fbReader) table(pos int) (fbTable, error) {
	so, err := r.u32(pos)
	if err != nil {
		return fbTable{}, err
	}
	vt := int64(pos) - int64(int32(so))
	if vt < 0 || vt > int64(len(r.buf))-4 {
		return fbTable{}, fmt.Errorf("table at %d has its vtable at %d, out of range", pos, vt)
	}
	t := fbTable{pos: pos, vt: int(vt)}
	t.vtSize, _ = r.u16(t.vt)
	t.size, _ = r.u16(t.vt + 2)
	if t.vtSize < 4 || t.vtSize%2 != 0 || t.vt+t.vtSize > len(r.buf) {
		return fbTable{}, fmt.Errorf("table at %d has a bad vtable (size %d)", pos, t.vtSize)
	}
	if t.size < 4 || pos+t.size > len(r.buf) {
		return fbTable{}, fmt.Errorf("table at %d has a bad size %d", pos, t.size)
	}
	return t, nil
}

// numFields returns how many slots the table's vtable covers.
func (t fbTable) numFields() int { return (t.vtSize - 4) / 2 }

// field returns the position of slot's value, or 0 if it is absent.
func (r *fbReader) field(t fbTable, slot, width int) (int, error) {
	if slot >= t.numFields() {
		return 0, nil
	}
	vo, _ := r.u16(t.vt + 4 + 2*slot)
	if vo == 0 {
		return 0, nil
	}
	if vo+width > t.size {
		return 0, fmt.Errorf("table at %d: field %d at %d lies outside the table's %d bytes", t.pos, slot, vo, t.size)
	}
	return t.pos + vo, nil
}

// int32Field reads a scalar field, or def when it is absent.
func (r *fbReader) int32Field(t fbTable, slot int, def int32) (int32, error) {
	p, err := r.field(t, slot, 4)
	if err != nil || p == 0 {
		return def, err
	}
	v, err := r.u32(p)
	return int32(v), err
}

// vector returns the position of the first element and the element count
// of the vector slot points to; present is false when the field is absent.
func (r *fbReader) vector(t fbTable, slot, elemSize int) (start, count int, present bool, err error) {
	p, err := r.field(t, slot, 4)
	if err != nil || p == 0 {
		return 0, 0, false, err
	}
	v, err := r.deref(p)
	if err != nil {
		return 0, 0, false, err
	}
	n, err := r.u32(v)
	if err != nil {
		return 0, 0, false, err
	}
	if uint64(n)*uint64(elemSize) > uint64(len(r.buf)-v-4) {
		return 0, 0, false, fmt.Errorf("vector at %d of %d elements runs past the end of the %d-byte buffer", v, n, len(r.buf))
	}
	return v + 4, int(n), true, nil
}

// stringField reads a string field; absent reads as "".
func (r *fbReader) stringField(t fbTable, slot int) (string, error) {
	start, n, ok, err := r.vector(t, slot, 1)
	if err != nil || !ok {
		return "", err
	}
	if start+n >= len(r.buf) || r.buf[start+n] != 0 {
		return "", fmt.Errorf("string at %d is not NUL-terminated", start-4)
	}
	return string(r.buf[start : start+n]), nil
}
