package pickle

import (
	"encoding/binary"
	"math"
	"unicode/utf8"

	"github.com/peftonnx/peftonnx/dtype"
	"github.com/peftonnx/peftonnx/npy"
)

// frameSize is the size at which a protocol 4 frame is closed, as in
// Python's pickle module; byte strings at least this long are written
// outside frames.
const frameSize = 64 << 10

// batchSize is the number of items per APPENDS or SETITEMS, as in Python.
const batchSize = 1000

// Encode returns v as a pickle of protocol 2 or 4 that Python's
// pickle.load reads back to the same value (see the package doc for the
// types). Arrays are written the way numpy pickles them, in C order and
// little-endian; dicts as plain dicts. Protocol 2 writes bytes as
// _codecs.encode(str, "latin1"), as Python 3 does, and cannot hold a
// string or array of 4 GiB or more.
func Encode(v any, protocol int) ([]byte, error) {
	if protocol != 2 && protocol != 4 {
		return nil, errorf("protocol %d: Encode writes protocol 2 or 4", protocol)
	}
	e := &encoder{proto: protocol, frameStart: -1, globals: map[string]uint32{}, dtypes: map[dtype.Type]uint32{}}
	e.buf = append(e.buf, opProto, byte(protocol))
	e.startFrame()
	if err := e.value(v, 0); err != nil {
		return nil, err
	}
	e.op(opStop)
	e.commitFrame()
	return e.buf, nil
}

type encoder struct {
	proto      int
	buf        []byte
	frameStart int // offset of the open frame's FRAME opcode, or -1
	memoLen    uint32
	globals    map[string]uint32     // memo index of each global written
	dtypes     map[dtype.Type]uint32 // memo index of each built dtype
}

func (e *encoder) op(b ...byte) { e.buf = append(e.buf, b...) }

func (e *encoder) startFrame() {
	if e.proto >= 4 {
		e.frameStart = len(e.buf)
		e.buf = append(e.buf, make([]byte, 9)...)
	}
}

// commitFrame closes the open frame, dropping it when it is empty.
func (e *encoder) commitFrame() {
	if e.frameStart < 0 {
		return
	}
	n := len(e.buf) - e.frameStart - 9
	if n == 0 {
		e.buf = e.buf[:e.frameStart]
	} else {
		e.buf[e.frameStart] = opFrame
		binary.LittleEndian.PutUint64(e.buf[e.frameStart+1:], uint64(n))
	}
	e.frameStart = -1
}

// maybeCommit starts a new frame once the open one is full.
func (e *encoder) maybeCommit() {
	if e.frameStart >= 0 && len(e.buf)-e.frameStart-9 >= frameSize {
		e.commitFrame()
		e.startFrame()
	}
}

// large writes an opcode with its length header and a long payload outside
// any frame, as Python's framer does.
func (e *encoder) large(header, payload []byte) {
	if e.frameStart >= 0 && len(payload) >= frameSize {
		e.commitFrame()
		e.op(header...)
		e.op(payload...)
		e.startFrame()
		return
	}
	e.op(header...)
	e.op(payload...)
	e.maybeCommit()
}

func (e *encoder) memoize() uint32 {
	i := e.memoLen
	e.memoLen++
	if e.proto >= 4 {
		e.op(opMemoize)
	} else if i < 256 {
		e.op(opBinPut, byte(i))
	} else {
		e.op(opLongBinPut)
		e.buf = binary.LittleEndian.AppendUint32(e.buf, i)
	}
	return i
}

func (e *encoder) get(i uint32) {
	if i < 256 {
		e.op(opBinGet, byte(i))
	} else {
		e.op(opLongBinGet)
		e.buf = binary.LittleEndian.AppendUint32(e.buf, i)
	}
}

func (e *encoder) global(module, name string) {
	key := module + "." + name
	if i, ok := e.globals[key]; ok {
		e.get(i)
		return
	}
	if e.proto >= 4 {
		e.str(module)
		e.str(name)
		e.op(opStackGlobal)
	} else {
		e.op(opGlobal)
		e.op([]byte(module + "\n" + name + "\n")...)
	}
	e.globals[key] = e.memoize()
}

func (e *encoder) value(v any, depth int) error {
	if depth > maxDepth {
		return errorf("values nested more than %d deep (or a container inside itself)", maxDepth)
	}
	switch x := v.(type) {
	case nil:
		e.op(opNone)
	case bool:
		if x {
			e.op(opNewTrue)
		} else {
			e.op(opNewFalse)
		}
	case int:
		e.int(int64(x))
	case int64:
		e.int(x)
	case float64:
		e.op(opBinFloat)
		e.buf = binary.BigEndian.AppendUint64(e.buf, math.Float64bits(x))
	case string:
		if !utf8.ValidString(x) {
			return errorf("string %q is not valid UTF-8", clip(x))
		}
		if e.proto < 4 && int64(len(x)) > math.MaxUint32 {
			return errorf("a string of %d bytes does not fit protocol 2: use protocol 4", len(x))
		}
		e.str(x)
	case []byte:
		return e.bytes(x)
	case *Tuple:
		return e.tuple(x.Items, depth)
	case *List:
		e.op(opEmptyList)
		return e.batches(x.Items, 1, opAppend, opAppends, depth)
	case *Dict:
		e.op(opEmptyDict)
		items := make([]any, 0, 2*x.Len())
		for k, v := range x.All() {
			items = append(items, k, v)
		}
		return e.batches(items, 2, opSetItem, opSetItems, depth)
	case *npy.Array:
		return e.array(x)
	default:
		return errorf("cannot encode a value of Go type %T", v)
	}
	e.maybeCommit()
	return nil
}

func (e *encoder) int(x int64) {
	switch {
	case x >= 0 && x < 1<<8:
		e.op(opBinInt1, byte(x))
	case x >= 0 && x < 1<<16:
		e.op(opBinInt2)
		e.buf = binary.LittleEndian.AppendUint16(e.buf, uint16(x))
	case x >= math.MinInt32 && x <= math.MaxInt32:
		e.op(opBinInt)
		e.buf = binary.LittleEndian.AppendUint32(e.buf, uint32(int32(x)))
	default:
		// LONG1: the shortest little-endian two's complement.
		b := binary.LittleEndian.AppendUint64(nil, uint64(x))
		for len(b) > 1 && ((b[len(b)-1] == 0 && b[len(b)-2]&0x80 == 0) || (b[len(b)-1] == 0xff && b[len(b)-2]&0x80 != 0)) {
			b = b[:len(b)-1]
		}
		e.op(opLong1, byte(len(b)))
		e.op(b...)
	}
}

func (e *encoder) str(s string) {
	n := len(s)
	var header []byte
	switch {
	case n < 256 && e.proto >= 4:
		header = []byte{opShortBinUnicode, byte(n)}
	case int64(n) <= math.MaxUint32:
		header = binary.LittleEndian.AppendUint32([]byte{opBinUnicode}, uint32(n))
	default:
		header = binary.LittleEndian.AppendUint64([]byte{opBinUnicode8}, uint64(n))
	}
	e.large(header, []byte(s))
}

func (e *encoder) bytes(b []byte) error {
	if e.proto >= 4 {
		var header []byte
		switch {
		case len(b) < 256:
			header = []byte{opShortBinBytes, byte(len(b))}
		case int64(len(b)) <= math.MaxUint32:
			header = binary.LittleEndian.AppendUint32([]byte{opBinBytes}, uint32(len(b)))
		default:
			header = binary.LittleEndian.AppendUint64([]byte{opBinBytes8}, uint64(len(b)))
		}
		e.large(header, b)
		return nil
	}
	if len(b) == 0 {
		e.global("__builtin__", "bytes")
		e.op(opEmptyTuple, opReduce)
		return nil
	}
	// Protocol 2 has no bytes opcode: Python 3 writes
	// _codecs.encode(<the bytes as latin1 text>, "latin1").
	latin := make([]byte, 0, len(b)+len(b)/2)
	for _, c := range b {
		latin = utf8.AppendRune(latin, rune(c))
	}
	if int64(len(latin)) > math.MaxUint32 {
		return errorf("%d bytes do not fit protocol 2: use protocol 4", len(b))
	}
	e.global("_codecs", "encode")
	e.str(string(latin))
	e.str("latin1")
	e.op(opTuple2, opReduce)
	return nil
}

func (e *encoder) tuple(items []any, depth int) error {
	if len(items) == 0 {
		e.op(opEmptyTuple)
		return nil
	}
	if len(items) > 3 {
		e.op(opMark)
	}
	for _, v := range items {
		if err := e.value(v, depth+1); err != nil {
			return err
		}
	}
	if len(items) > 3 {
		e.op(opTuple)
	} else {
		e.op(opTuple1 + byte(len(items)-1))
	}
	return nil
}

// batches writes items (pairs for a dict) onto the container on the stack:
// one with the single-item opcode, more between MARK and the batch opcode.
func (e *encoder) batches(items []any, per int, one, many byte, depth int) error {
	for start := 0; start < len(items); start += batchSize * per {
		end := min(start+batchSize*per, len(items))
		if end-start > per {
			e.op(opMark)
		}
		for _, v := range items[start:end] {
			if err := e.value(v, depth+1); err != nil {
				return err
			}
		}
		if end-start > per {
			e.op(many)
		} else {
			e.op(one)
		}
		e.maybeCommit()
	}
	return nil
}

// array writes a the way numpy's ndarray.__reduce__ does:
// _reconstruct(ndarray, (0,), b'b') with the state
// (1, shape, dtype, False, data) applied by BUILD.
func (e *encoder) array(a *npy.Array) error {
	if err := a.Validate(); err != nil {
		return errorf("array: %w", err)
	}
	e.global("numpy.core.multiarray", "_reconstruct")
	e.global("numpy", "ndarray")
	e.op(opBinInt1, 0, opTuple1)
	if err := e.bytes([]byte("b")); err != nil {
		return err
	}
	e.op(opTuple3, opReduce)
	e.op(opMark, opBinInt1, 1)
	shape := make([]any, len(a.Shape))
	for i, d := range a.Shape {
		shape[i] = d
	}
	if err := e.tuple(shape, 0); err != nil {
		return err
	}
	e.dtype(a.DType)
	e.op(opNewFalse)
	if err := e.bytes(a.Data); err != nil {
		return errorf("array %s: %w", a, err)
	}
	e.op(opTuple, opBuild)
	e.maybeCommit()
	return nil
}

// dtype writes numpy.dtype(typestr, False, True) with its state, or a
// reference to the one written before.
func (e *encoder) dtype(dt dtype.Type) {
	if i, ok := e.dtypes[dt]; ok {
		e.get(i)
		return
	}
	descr := dt.Descr()
	e.global("numpy", "dtype")
	e.str(descr[1:])
	e.op(opNewFalse, opNewTrue, opTuple3, opReduce)
	e.dtypes[dt] = e.memoize()
	e.op(opMark, opBinInt1, 3)
	e.str(descr[:1])
	e.op(opNone, opNone, opNone)
	e.int(-1)
	e.int(-1)
	e.op(opBinInt1, 0, opTuple, opBuild)
}
