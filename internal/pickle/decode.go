package pickle

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"unicode/utf8"

	"github.com/peftonnx/peftonnx/npy"
)

// Limits of the decoder. Each keeps a hostile file from costing more than
// a small multiple of its own size, or from nesting so deep that walking
// the result recurses without bound.
const (
	// MaxFileSize is the largest file ReadFile reads.
	MaxFileSize = 1 << 36 // 64 GiB
	maxStack    = 1 << 20 // values on the stack
	maxMemo     = 1 << 22 // memo entries
	maxMarks    = 64      // open MARKs
	maxDepth    = 64      // nested containers
	maxLine     = 1024    // the module and name lines of GLOBAL
)

// ReadFile decodes the pickle in path, which must hold a dict (see
// Decode). Errors name the file.
func ReadFile(path string) (*Dict, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, errorf("%w", err)
	}
	if st.Size() > MaxFileSize {
		return nil, &Error{File: path, Offset: -1, Msg: fmt.Sprintf("%d bytes is more than the %d this reader takes", st.Size(), int64(MaxFileSize))}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, errorf("%w", err)
	}
	d, err := DecodeDict(data)
	if err != nil {
		var pe *Error
		if errors.As(err, &pe) {
			c := *pe
			c.File = path
			return nil, &c
		}
		return nil, err
	}
	return d, nil
}

// DecodeDict decodes a pickle whose value is a dict.
func DecodeDict(data []byte) (*Dict, error) {
	v, err := Decode(data)
	if err != nil {
		return nil, err
	}
	d, ok := v.(*Dict)
	if !ok {
		return nil, &Error{Offset: -1, Msg: fmt.Sprintf("the pickle holds %s, not a dict", TypeName(v))}
	}
	return d, nil
}

// Decode decodes one pickle of protocol 2 to 5 that holds the subset this
// package reads (see the package doc), and nothing after its STOP. Arrays
// and byte strings may share memory with data. Errors are *Error values.
func Decode(data []byte) (any, error) {
	d := &decoder{data: data, frameEnd: -1, memo: map[uint32]any{}, costLimit: 4*int64(len(data)) + 1<<20}
	v, err := d.run()
	if err != nil {
		return nil, &Error{Offset: int64(d.opPos), Op: d.op, Msg: err.Error(), err: err}
	}
	return v, nil
}

// decoder is the stack machine. It builds values and never imports or
// calls anything: the globals it knows are names that select one of its
// own constructors (see reduce).
type decoder struct {
	data      []byte
	pos       int // next byte to read
	frameEnd  int // end of the current protocol 4 frame, or -1
	op        byte
	opPos     int
	stack     []any
	marks     []int // stack lengths at each open MARK
	memo      map[uint32]any
	costLimit int64
}

func (d *decoder) run() (any, error) {
	if len(d.data) < 2 || d.data[0] != opProto {
		if len(d.data) > 0 {
			d.op = d.data[0]
		}
		return nil, fmt.Errorf("no PROTO opcode at the start: not a pickle of protocol 2 or later")
	}
	for {
		d.opPos = d.pos
		if d.pos == len(d.data) {
			d.opPos, d.op = -1, 0
			return nil, fmt.Errorf("the input ends at byte %d without a STOP opcode", d.pos)
		}
		b, err := d.read(1)
		if err != nil {
			return nil, err
		}
		d.op = b[0]
		if d.op == opStop {
			return d.stop()
		}
		if err := d.step(); err != nil {
			return nil, err
		}
	}
}

// read returns the next n bytes, which must lie inside the input and, in
// a frame, inside the frame.
func (d *decoder) read(n int) ([]byte, error) {
	if d.frameEnd >= 0 {
		if d.pos == d.frameEnd {
			d.frameEnd = -1
		} else if n > d.frameEnd-d.pos {
			return nil, fmt.Errorf("reads %d bytes, but its frame ends %d bytes on", n, d.frameEnd-d.pos)
		}
	}
	if n < 0 || n > len(d.data)-d.pos {
		return nil, fmt.Errorf("wants %d bytes, but the input ends %d bytes on", n, len(d.data)-d.pos)
	}
	b := d.data[d.pos : d.pos+n]
	d.pos += n
	return b, nil
}

// readLen reads a little-endian length of size bytes (1, 4 or 8) and
// checks it against what is left of the input.
func (d *decoder) readLen(size int) (int, error) {
	n, err := d.readUint(size)
	if err != nil {
		return 0, err
	}
	if left := uint64(len(d.data) - d.pos); n > left {
		return 0, fmt.Errorf("claims %d bytes, but only %d are left", n, left)
	}
	return int(n), nil
}

// readUint reads a little-endian unsigned integer of size bytes (1, 4 or
// 8).
func (d *decoder) readUint(size int) (uint64, error) {
	b, err := d.read(size)
	if err != nil {
		return 0, err
	}
	switch size {
	case 1:
		return uint64(b[0]), nil
	case 4:
		return uint64(binary.LittleEndian.Uint32(b)), nil
	}
	return binary.LittleEndian.Uint64(b), nil
}

// memoIndex reads the memo index of BINPUT and BINGET (1 byte) or, long,
// of LONG_BINPUT and LONG_BINGET (4 bytes).
func (d *decoder) memoIndex(long bool) (uint32, error) {
	size := 1
	if long {
		size = 4
	}
	i, err := d.readUint(size)
	return uint32(i), err
}

// readCounted reads a length of size bytes (readLen) and then that many
// bytes.
func (d *decoder) readCounted(size int) ([]byte, error) {
	n, err := d.readLen(size)
	if err != nil {
		return nil, err
	}
	return d.read(n)
}

func (d *decoder) readLine() (string, error) {
	for i := d.pos; i < len(d.data) && i-d.pos <= maxLine; i++ {
		if d.data[i] == '\n' {
			b, err := d.read(i - d.pos + 1)
			if err != nil {
				return "", err
			}
			return string(b[:len(b)-1]), nil
		}
	}
	return "", fmt.Errorf("no end of line within %d bytes", maxLine)
}

func (d *decoder) push(v any) error {
	if len(d.stack) >= maxStack {
		return fmt.Errorf("more than %d values on the stack", maxStack)
	}
	d.stack = append(d.stack, v)
	return nil
}

// floor is the lowest stack index the current MARK leaves reachable.
func (d *decoder) floor() int {
	if len(d.marks) == 0 {
		return 0
	}
	return d.marks[len(d.marks)-1]
}

func (d *decoder) pop() (any, error) {
	if len(d.stack) <= d.floor() {
		return nil, fmt.Errorf("stack underflow")
	}
	v := d.stack[len(d.stack)-1]
	d.stack = d.stack[:len(d.stack)-1]
	return v, nil
}

// pop2 pops the top two items of the stack: top, then under, the one
// below it.
func (d *decoder) pop2() (under, top any, err error) {
	if top, err = d.pop(); err != nil {
		return nil, nil, err
	}
	if under, err = d.pop(); err != nil {
		return nil, nil, err
	}
	return under, top, nil
}

func (d *decoder) top() (any, error) {
	if len(d.stack) <= d.floor() {
		return nil, fmt.Errorf("stack underflow")
	}
	return d.stack[len(d.stack)-1], nil
}

// popMark returns the values pushed since the last MARK and closes it.
func (d *decoder) popMark() ([]any, error) {
	if len(d.marks) == 0 {
		return nil, fmt.Errorf("no MARK to close")
	}
	m := d.marks[len(d.marks)-1]
	d.marks = d.marks[:len(d.marks)-1]
	items := append([]any(nil), d.stack[m:]...)
	d.stack = d.stack[:m]
	return items, nil
}

func (d *decoder) stop() (any, error) {
	if len(d.marks) != 0 {
		return nil, fmt.Errorf("%d MARKs left open", len(d.marks))
	}
	if len(d.stack) != 1 {
		return nil, fmt.Errorf("%d values on the stack, want 1", len(d.stack))
	}
	if rest := len(d.data) - d.pos; rest != 0 {
		return nil, fmt.Errorf("%d bytes follow the STOP", rest)
	}
	return finish(d.stack[0])
}

// step executes the opcode d.op.
func (d *decoder) step() error {
	switch d.op {
	case opProto:
		b, err := d.read(1)
		if err != nil {
			return err
		}
		if b[0] < 2 || b[0] > 5 {
			return fmt.Errorf("protocol %d: only protocols 2 to 5 are read", b[0])
		}
		return nil
	case opFrame:
		if d.frameEnd >= 0 && d.pos != d.frameEnd {
			return fmt.Errorf("a new frame begins %d bytes before the current one ends", d.frameEnd-d.pos)
		}
		d.frameEnd = -1
		n, err := d.readLen(8)
		if err != nil {
			return err
		}
		d.frameEnd = d.pos + n
		return nil
	case opMark:
		if len(d.marks) >= maxMarks {
			return fmt.Errorf("more than %d MARKs open", maxMarks)
		}
		d.marks = append(d.marks, len(d.stack))
		return nil

	case opNone:
		return d.push(nil)
	case opNewTrue:
		return d.push(true)
	case opNewFalse:
		return d.push(false)
	case opBinInt1:
		b, err := d.read(1)
		if err != nil {
			return err
		}
		return d.push(int64(b[0]))
	case opBinInt2:
		b, err := d.read(2)
		if err != nil {
			return err
		}
		return d.push(int64(binary.LittleEndian.Uint16(b)))
	case opBinInt:
		b, err := d.read(4)
		if err != nil {
			return err
		}
		return d.push(int64(int32(binary.LittleEndian.Uint32(b))))
	case opLong1, opLong4:
		size := 1
		if d.op == opLong4 {
			size = 4
		}
		n, err := d.readLen(size)
		if err != nil {
			return err
		}
		if n > 8 {
			return fmt.Errorf("an integer of %d bytes: only 64-bit integers are read", n)
		}
		b, err := d.read(n)
		if err != nil {
			return err
		}
		var x int64
		for i := n - 1; i >= 0; i-- {
			x = x<<8 | int64(b[i])
		}
		if n > 0 && n < 8 && b[n-1]&0x80 != 0 {
			x -= 1 << (8 * n) // sign-extend
		}
		return d.push(x)
	case opBinFloat:
		b, err := d.read(8)
		if err != nil {
			return err
		}
		return d.push(math.Float64frombits(binary.BigEndian.Uint64(b)))

	case opShortBinUnicode, opBinUnicode, opBinUnicode8:
		b, err := d.readCounted(map[byte]int{opShortBinUnicode: 1, opBinUnicode: 4, opBinUnicode8: 8}[d.op])
		if err != nil {
			return err
		}
		if !utf8.Valid(b) {
			return fmt.Errorf("the string is not valid UTF-8")
		}
		return d.push(string(b))
	case opShortBinBytes, opBinBytes, opBinBytes8, opByteArray8:
		b, err := d.readCounted(map[byte]int{opShortBinBytes: 1, opBinBytes: 4, opBinBytes8: 8, opByteArray8: 8}[d.op])
		if err != nil {
			return err
		}
		return d.push(b)

	case opEmptyTuple:
		return d.push(&Tuple{})
	case opTuple1, opTuple2, opTuple3:
		n := int(d.op-opTuple1) + 1
		if len(d.stack)-d.floor() < n {
			return fmt.Errorf("stack underflow")
		}
		items := append([]any(nil), d.stack[len(d.stack)-n:]...)
		d.stack = d.stack[:len(d.stack)-n]
		t, err := d.tuple(items)
		if err != nil {
			return err
		}
		return d.push(t)
	case opTuple:
		items, err := d.popMark()
		if err != nil {
			return err
		}
		t, err := d.tuple(items)
		if err != nil {
			return err
		}
		return d.push(t)
	case opEmptyList:
		return d.push(&List{})
	case opEmptyDict:
		return d.push(NewDict())
	case opAppend, opAppends:
		var items []any
		if d.op == opAppend {
			v, err := d.pop()
			if err != nil {
				return err
			}
			items = []any{v}
		} else {
			var err error
			if items, err = d.popMark(); err != nil {
				return err
			}
		}
		t, err := d.top()
		if err != nil {
			return err
		}
		l, ok := t.(*List)
		if !ok {
			return fmt.Errorf("appends to %s, not a list", TypeName(t))
		}
		for _, v := range items {
			v, err := d.child(&l.node, v)
			if err != nil {
				return err
			}
			l.Items = append(l.Items, v)
		}
		return nil
	case opSetItem, opSetItems:
		var items []any
		if d.op == opSetItem {
			if len(d.stack)-d.floor() < 2 {
				return fmt.Errorf("stack underflow")
			}
			items = append([]any(nil), d.stack[len(d.stack)-2:]...)
			d.stack = d.stack[:len(d.stack)-2]
		} else {
			var err error
			if items, err = d.popMark(); err != nil {
				return err
			}
			if len(items)%2 != 0 {
				return fmt.Errorf("an odd number (%d) of keys and values", len(items))
			}
		}
		t, err := d.top()
		if err != nil {
			return err
		}
		dict, ok := t.(*Dict)
		if !ok {
			return fmt.Errorf("sets items of %s, not a dict", TypeName(t))
		}
		for i := 0; i < len(items); i += 2 {
			key, ok := items[i].(string)
			if !ok {
				return fmt.Errorf("a dict key of type %s: only str keys are read", TypeName(items[i]))
			}
			v, err := d.child(&dict.node, items[i+1])
			if err != nil {
				return fmt.Errorf("key %q: %w", key, err)
			}
			if err := d.charge(&dict.node, int64(len(key))+1); err != nil {
				return err
			}
			dict.Set(key, v)
		}
		return nil

	case opBinPut, opLongBinPut, opMemoize:
		v, err := d.top()
		if err != nil {
			return err
		}
		i := uint32(len(d.memo)) // MEMOIZE's
		if d.op != opMemoize {
			if i, err = d.memoIndex(d.op == opLongBinPut); err != nil {
				return err
			}
		}
		if _, ok := d.memo[i]; !ok && len(d.memo) >= maxMemo {
			return fmt.Errorf("more than %d memo entries", maxMemo)
		}
		d.memo[i] = v
		return nil
	case opBinGet, opLongBinGet:
		i, err := d.memoIndex(d.op == opLongBinGet)
		if err != nil {
			return err
		}
		v, ok := d.memo[i]
		if !ok {
			return fmt.Errorf("memo entry %d was never stored", i)
		}
		return d.push(v)

	case opGlobal:
		module, err := d.readLine()
		if err != nil {
			return err
		}
		name, err := d.readLine()
		if err != nil {
			return err
		}
		return d.global(module, name)
	case opStackGlobal:
		module, name, err := d.pop2()
		if err != nil {
			return err
		}
		m, ok1 := module.(string)
		n, ok2 := name.(string)
		if !ok1 || !ok2 {
			return fmt.Errorf("module and name must be strings, got %s and %s", TypeName(module), TypeName(name))
		}
		return d.global(m, n)
	case opReduce:
		callable, args, err := d.pop2()
		if err != nil {
			return err
		}
		g, ok := callable.(*global)
		if !ok {
			return fmt.Errorf("calls %s, which is no global", TypeName(callable))
		}
		t, ok := args.(*Tuple)
		if !ok {
			return fmt.Errorf("%s takes a tuple of arguments, got %s", g, TypeName(args))
		}
		v, err := reduce(g, t.Items)
		if err != nil {
			return err
		}
		return d.push(v)
	case opBuild:
		state, err := d.pop()
		if err != nil {
			return err
		}
		obj, err := d.top()
		if err != nil {
			return err
		}
		return build(obj, state)

	case opString, opBinString, opShortBinString, opUnicode:
		return fmt.Errorf("str opcodes of protocol 0 and Python 2 are not read")
	case opNextBuffer, opReadOnlyBuffer:
		return fmt.Errorf("out-of-band buffers are not read: pickle with buffer_callback=None")
	}
	if _, known := opNames[d.op]; known {
		return fmt.Errorf("opcode outside the subset this reader takes (dicts of numpy arrays)")
	}
	return fmt.Errorf("not a pickle opcode")
}

// tuple builds a tuple of items, unwrapping finished arrays.
func (d *decoder) tuple(items []any) (*Tuple, error) {
	t := &Tuple{Items: items}
	for i, v := range items {
		if p, ok := v.(*pendingArray); ok && p.arr != nil {
			v = p.arr
			items[i] = v
		}
		if isInner(v) {
			t.inner = true
			continue
		}
		if _, err := d.child(&t.node, v); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// child checks v before it goes into the container whose node is parent:
// no internal object in a list or dict, no item into a container that is
// already inside another, no container into itself, and the limits of
// depth and cost. It returns the value to store.
func (d *decoder) child(parent *node, v any) (any, error) {
	if parent.sealed {
		return nil, fmt.Errorf("adds to a container that is already inside another")
	}
	v, err := finish(v)
	if err != nil {
		return nil, err
	}
	if n := nodeOf(v); n != nil {
		if n == parent {
			return nil, fmt.Errorf("a container inside itself")
		}
		n.sealed = true
		if depth := max(n.depth, 1) + 1; depth > parent.depth {
			parent.depth = depth
		}
		if parent.depth > maxDepth {
			return nil, fmt.Errorf("containers nested more than %d deep", maxDepth)
		}
	} else if parent.depth == 0 {
		parent.depth = 1
	}
	return v, d.charge(parent, costOf(v))
}

// charge adds c to the cost of parent and checks the limit.
func (d *decoder) charge(parent *node, c int64) error {
	parent.cost += c
	if parent.cost > d.costLimit {
		return fmt.Errorf("the value expands to more than %d units from %d bytes of input (references repeated)", d.costLimit, len(d.data))
	}
	return nil
}

// finish returns the value v stands for in a finished result: the array of
// a built ndarray. Internal objects (globals, dtypes, ndarrays without
// their state) and tuples holding them are errors.
func finish(v any) (any, error) {
	switch x := v.(type) {
	case *pendingArray:
		if x.arr == nil {
			return nil, fmt.Errorf("a numpy array without its state (no BUILD)")
		}
		return x.arr, nil
	case *global:
		return nil, fmt.Errorf("the global %s as a value", x)
	case *numpyDType:
		return nil, fmt.Errorf("a numpy dtype as a value")
	case *Tuple:
		if x.inner {
			return nil, fmt.Errorf("a tuple holding globals or dtypes as a value")
		}
	}
	return v, nil
}

// isInner reports a decoder-internal object, or a tuple that holds one.
func isInner(v any) bool {
	switch x := v.(type) {
	case *global, *numpyDType, *pendingArray:
		return true
	case *Tuple:
		return x.inner
	}
	return false
}

func nodeOf(v any) *node {
	switch x := v.(type) {
	case *Dict:
		return &x.node
	case *List:
		return &x.node
	case *Tuple:
		return &x.node
	}
	return nil
}

// costOf is the size of the tree under v: one per value plus the bytes of
// strings and arrays.
func costOf(v any) int64 {
	switch x := v.(type) {
	case string:
		return int64(len(x)) + 1
	case []byte:
		return int64(len(x)) + 1
	case *npy.Array:
		return int64(len(x.Data)) + 1
	}
	if n := nodeOf(v); n != nil {
		return n.cost + 1
	}
	return 1
}

// TypeName names the Python type of v, for messages: "dict", "numpy.ndarray", ….
func TypeName(v any) string {
	switch x := v.(type) {
	case nil:
		return "None"
	case bool:
		return "bool"
	case int64, int:
		return "int"
	case float64:
		return "float"
	case string:
		return "str"
	case []byte:
		return "bytes"
	case *Tuple:
		return "tuple"
	case *List:
		return "list"
	case *Dict:
		return "dict"
	case *npy.Array:
		return "numpy.ndarray"
	case *pendingArray:
		return "numpy.ndarray"
	case *numpyDType:
		return "numpy.dtype"
	case *global:
		return "the global " + x.String()
	}
	return fmt.Sprintf("%T", v)
}
