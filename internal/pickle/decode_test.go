package pickle

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/peftonnx/peftonnx/npy"
)

// pk assembles a pickle from opcodes (bytes), raw strings and byte slices.
func pk(parts ...any) []byte {
	var b []byte
	for _, p := range parts {
		switch x := p.(type) {
		case byte:
			b = append(b, x)
		case int:
			b = append(b, byte(x))
		case rune:
			b = append(b, byte(x))
		case string:
			b = append(b, x...)
		case []byte:
			b = append(b, x...)
		default:
			panic("pk: bad part")
		}
	}
	return b
}

func u32(n uint32) []byte { return binary.LittleEndian.AppendUint32(nil, n) }
func u64(n uint64) []byte { return binary.LittleEndian.AppendUint64(nil, n) }

// ndarray assembles numpy's protocol 2 pickle of one array, from its
// typestr, byte order, shape, order and data (any value that pk takes).
func ndarray(typestr, order string, shape []int, fortran bool, data any) []byte {
	sh := []any{opMark}
	for _, d := range shape {
		sh = append(sh, opBinInt, u32(uint32(d)))
	}
	sh = append(sh, opTuple)
	f := opNewFalse
	if fortran {
		f = opNewTrue
	}
	parts := []any{
		opGlobal, "numpy.core.multiarray\n_reconstruct\n", opGlobal, "numpy\nndarray\n",
		opBinInt1, 0, opTuple1, opShortBinBytes, 1, "b", opTuple3, opReduce,
		opMark, opBinInt1, 1,
	}
	parts = append(parts, sh...)
	parts = append(parts,
		opGlobal, "numpy\ndtype\n", opShortBinUnicode, len(typestr), typestr, opNewFalse, opNewTrue, opTuple3, opReduce,
		opMark, opBinInt1, 3, opShortBinUnicode, len(order), order, opNone, opNone, opNone,
		opBinInt, u32(0xffffffff), opBinInt, u32(0xffffffff), opBinInt1, 0, opTuple, opBuild,
		f, data, opTuple, opBuild)
	return pk(parts...)
}

func bytesOp(b []byte) []byte {
	return pk(opBinBytes, u32(uint32(len(b))), b)
}

// Offsets in arr cases, resolved against the input: the array's BUILD, and
// the REDUCE and BUILD of its dtype.
const (
	lastBuild = -iota - 10
	dtypeReduce
	dtypeBuild
)

// arr is a protocol 2 pickle of one array (see ndarray).
func arr(typestr, order string, shape []int, fortran bool, data any) []byte {
	return pk("\x80\x02", ndarray(typestr, order, shape, fortran, data), opStop)
}

// TestDecodeRefuses feeds malformed and hostile pickles: each must give an
// *Error at the offset and opcode at fault that says what is wrong.
func TestDecodeRefuses(t *testing.T) {
	const p2 = "\x80\x02"
	big := make([]byte, 1<<16)
	cases := []struct {
		name   string
		in     []byte
		offset int64
		op     string
		want   string
	}{
		{"empty", nil, 0, "0x00", "no PROTO opcode"},
		{"protocol 0", []byte("(lp0\n."), 0, "MARK", "no PROTO opcode"},
		{"protocol 6", pk(p2[:1], 6, opNone, opStop), 0, "PROTO", "protocol 6"},
		{"no STOP", pk(p2, opNone), -1, "0x00", "the input ends at byte 3 without a STOP opcode"},
		{"os.system", pk(p2, opGlobal, "os\nsystem\n", opShortBinUnicode, 2, "ls", opTuple1, opReduce, opStop), 2, "GLOBAL", "the global os.system is outside the subset"},
		{"builtins.eval by STACK_GLOBAL", pk("\x80\x04", opShortBinUnicode, 8, "builtins", opShortBinUnicode, 4, "eval", opStackGlobal, opStop), 2 + 10 + 6, "STACK_GLOBAL", "the global builtins.eval"},
		{"GLOBAL without newline", pk(p2, opGlobal, strings.Repeat("x", 2000)), 2, "GLOBAL", "no end of line"},
		{"bytes longer than the file", pk(p2, opBinBytes, u32(1<<31), "abc"), 2, "BINBYTES", "claims 2147483648 bytes, but only 3 are left"},
		{"str8 longer than the file", pk("\x80\x04", opBinUnicode8, u64(1<<62), "x"), 2, "BINUNICODE8", "claims 4611686018427387904 bytes"},
		{"bytearray8 longer than the file", pk("\x80\x05", opByteArray8, u64(1<<63+5)), 2, "BYTEARRAY8", "claims"},
		{"frame longer than the file", pk("\x80\x04", opFrame, u64(100), opNone, opStop), 2, "FRAME", "claims 100 bytes, but only 2 are left"},
		{"opcode across a frame end", pk("\x80\x04", opFrame, u64(3), opShortBinUnicode, 3, "abc", opStop), 11, "SHORT_BINUNICODE", "its frame ends"},
		{"frame inside a frame", pk("\x80\x04", opFrame, u64(10), opFrame, u64(1), opNone, opStop), 11, "FRAME", "a new frame begins 9 bytes before"},
		{"stack underflow", pk(p2, opNone, opReduce, opStop), 3, "REDUCE", "stack underflow"},
		{"underflow below a MARK", pk(p2, opNone, opMark, opTuple1, opStop), 4, "TUPLE1", "stack underflow"},
		{"TUPLE without MARK", pk(p2, opNone, opTuple, opStop), 3, "TUPLE", "no MARK"},
		{"memo never stored", pk(p2, opBinGet, 7, opStop), 2, "BINGET", "memo entry 7 was never stored"},
		{"too many MARKs", pk(p2, strings.Repeat("(", 65)), 66, "MARK", "more than 64 MARKs"},
		{"MARK left open", pk(p2, opMark, opNone, opStop), 4, "STOP", "1 MARKs left open"},
		{"two values at STOP", pk(p2, opNone, opNone, opStop), 4, "STOP", "2 values on the stack"},
		{"bytes after STOP", pk(p2, opNone, opStop, "junk"), 3, "STOP", "4 bytes follow the STOP"},
		{"lists nested too deep", pk(p2, strings.Repeat("]", 66), strings.Repeat("a", 65), opStop), 2 + 66 + 63, "APPEND", "nested more than 64 deep"},
		{"list inside itself", pk(p2, opEmptyList, opBinPut, 0, opBinGet, 0, opAppend, opStop), 7, "APPEND", "a container inside itself"},
		{"change after placement", pk(p2, opEmptyList, opEmptyList, opBinPut, 1, opAppend, opBinGet, 1, opNone, opAppend, opStop), 10, "APPEND", "already inside another"},
		{"one value repeated", pk("\x80\x04", bytesOp(big), opBinPut, 0, opEmptyList, opMark, strings.Repeat("h\x00", 40), opAppends, opStop), 2 + 5 + 1<<16 + 2 + 2 + 80, "APPENDS", "expands to more than"},
		{"int dict key", pk(p2, opEmptyDict, opBinInt1, 1, opBinInt1, 2, opSetItem, opStop), 7, "SETITEM", "a dict key of type int"},
		{"odd SETITEMS", pk(p2, opEmptyDict, opMark, opNone, opSetItems, opStop), 5, "SETITEMS", "an odd number (1)"},
		{"SETITEM on a list", pk(p2, opEmptyList, opShortBinUnicode, 1, "k", opNone, opSetItem, opStop), 7, "SETITEM", "sets items of list"},
		{"integer over 64 bits", pk(p2, opLong1, 9, strings.Repeat("\x01", 9), opStop), 2, "LONG1", "an integer of 9 bytes"},
		{"out-of-band buffer", pk("\x80\x05", opNextBuffer, opStop), 2, "NEXT_BUFFER", "out-of-band buffers"},
		{"Python 2 str", pk(p2, opShortBinString, 1, "a", opStop), 2, "SHORT_BINSTRING", "Python 2 are not read"},
		{"persistent id", pk(p2, opNone, opBinPersID, opStop), 3, "BINPERSID", "outside the subset"},
		{"set", pk("\x80\x04", opEmptySet, opStop), 2, "EMPTY_SET", "outside the subset"},
		{"no opcode", pk(p2, 0xff), 2, "0xff", "not a pickle opcode"},
		{"invalid UTF-8", pk(p2, opBinUnicode, u32(2), "\xff\xfe", opStop), 2, "BINUNICODE", "not valid UTF-8"},
		{"REDUCE of a tuple", pk(p2, opEmptyTuple, opEmptyTuple, opReduce, opStop), 4, "REDUCE", "calls tuple, which is no global"},
		{"encode as utf-8", pk(p2, opGlobal, "_codecs\nencode\n", opShortBinUnicode, 1, "a", opShortBinUnicode, 5, "utf-8", opTuple2, opReduce, opStop), 2 + 16 + 3 + 7 + 1, "REDUCE", `with encoding "utf-8"`},
		{"encode beyond latin1", pk(p2, opGlobal, "_codecs\nencode\n", opBinUnicode, u32(3), "\u20ac", opShortBinUnicode, 6, "latin1", opTuple2, opReduce, opStop), 2 + 16 + 8 + 8 + 1, "REDUCE", "U+20AC is not latin1"},
		{"global as a value", pk(p2, opEmptyDict, opShortBinUnicode, 1, "k", opGlobal, "numpy\ndtype\n", opSetItem, opStop), 19, "SETITEM", "the global numpy.dtype as a value"},
		{"array without BUILD", pk(p2, opGlobal, "numpy.core.multiarray\n_reconstruct\n", opGlobal, "numpy\nndarray\n", opBinInt1, 0, opTuple1, opShortBinBytes, 1, "b", opTuple3, opReduce, opStop), 2 + 36 + 15 + 2 + 1 + 3 + 1 + 1, "STOP", "without its state"},
		{"shape and data disagree", arr("f4", "<", []int{2, 3}, false, bytesOp(make([]byte, 4))), lastBuild, "BUILD", "of shape (2, 3) needs 24 bytes of data, the pickle gives 4"},
		{"shape too large", arr("f8", "<", []int{1 << 30, 1 << 30, 1 << 30}, false, bytesOp(nil)), lastBuild, "BUILD", "is too large"},
		{"object array", arr("O8", "|", []int{1}, false, pk(opEmptyList)), dtypeReduce, "REDUCE", `numpy dtype "O8" is not read`},
		{"complex", arr("c16", "<", []int{1}, false, bytesOp(make([]byte, 16))), dtypeReduce, "REDUCE", `numpy dtype "c16"`},
		{"object data", arr("f4", "<", []int{1}, false, pk(opEmptyList)), lastBuild, "BUILD", "an object array"},
		{"native byte order", arr("f4", "=", []int{1}, false, bytesOp(make([]byte, 4))), dtypeBuild, "BUILD", `byte order "=" for float32`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			switch c.offset {
			case lastBuild:
				c.offset = int64(len(c.in) - 2)
			case dtypeReduce:
				c.offset = int64(bytes.Index(c.in, []byte{opNewFalse, opNewTrue, opTuple3, opReduce}) + 3)
			case dtypeBuild:
				c.offset = int64(bytes.Index(c.in, []byte{opBinInt1, 0, opTuple, opBuild}) + 3)
			}
			v, err := Decode(c.in)
			if err == nil {
				t.Fatalf("got %s, want an error", TypeName(v))
			}
			var pe *Error
			if !errors.As(err, &pe) {
				t.Fatalf("got %T %v, want *Error", err, err)
			}
			msg := err.Error()
			if pe.Offset != c.offset || opName(pe.Op) != c.op || !strings.Contains(msg, c.want) {
				t.Errorf("got %q (offset %d, %s), want offset %d, %s, containing %q", msg, pe.Offset, opName(pe.Op), c.offset, c.op, c.want)
			}
			if strings.Contains(msg, "\n") || !strings.HasPrefix(msg, "pickle: ") {
				t.Errorf("got %q, want one line that starts with \"pickle: \"", msg)
			}
		})
	}
}

// TestDecodeArrays checks arrays assembled by hand in every order and byte
// order: each comes out in C order, little-endian.
func TestDecodeArrays(t *testing.T) {
	// arange(6).reshape(2, 3) as int16, in Fortran order (first axis fastest).
	fortranLE := pk(0, 0, 3, 0, 1, 0, 4, 0, 2, 0, 5, 0)
	fortranBE := pk(0, 0, 0, 3, 0, 1, 0, 4, 0, 2, 0, 5)
	cLE := pk(0, 0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0)
	cBE := pk(0, 0, 0, 1, 0, 2, 0, 3, 0, 4, 0, 5)
	frombuffer := func(order string, data []byte) []byte {
		return pk("\x80\x05", opShortBinUnicode, 18, "numpy.core.numeric", opShortBinUnicode, 11, "_frombuffer", opStackGlobal,
			opMark, opByteArray8, u64(uint64(len(data))), data,
			opShortBinUnicode, 5, "numpy", opShortBinUnicode, 5, "dtype", opStackGlobal,
			opShortBinUnicode, 2, "i2", opNewFalse, opNewTrue, opTuple3, opReduce,
			opMark, opBinInt1, 3, opShortBinUnicode, 1, "<", opNone, opNone, opNone,
			opBinInt, u32(0xffffffff), opBinInt, u32(0xffffffff), opBinInt1, 0, opTuple, opBuild,
			opBinInt1, 2, opBinInt1, 3, opTuple2, opShortBinUnicode, 1, order, opTuple, opReduce, opStop)
	}
	cases := []struct {
		name string
		in   []byte
	}{
		{"C little-endian", arr("i2", "<", []int{2, 3}, false, bytesOp(cLE))},
		{"C big-endian", arr("i2", ">", []int{2, 3}, false, bytesOp(cBE))},
		{"Fortran little-endian", arr("i2", "<", []int{2, 3}, true, bytesOp(fortranLE))},
		{"Fortran big-endian", arr("i2", ">", []int{2, 3}, true, bytesOp(fortranBE))},
		{"protocol 5 C", frombuffer("C", cLE)},
		{"protocol 5 Fortran", frombuffer("F", fortranLE)},
	}
	for _, c := range cases {
		v, err := Decode(c.in)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		a, ok := v.(*npy.Array)
		if !ok {
			t.Errorf("%s: got %s, want an array", c.name, TypeName(v))
			continue
		}
		got, err := npy.Values[int16](a)
		if err != nil || !slices.Equal(a.Shape, []int64{2, 3}) || !slices.Equal(got, []int16{0, 1, 2, 3, 4, 5}) {
			t.Errorf("%s: got %v %v (%v), want [2 3] [0 1 2 3 4 5]", c.name, a.Shape, got, err)
		}
	}
	// A 3-D Fortran array: element (i, j, k) of shape (2, 3, 4) sits at
	// i + 2j + 6k in the data and at 12i + 4j + k in C order.
	data := make([]byte, 24)
	want := make([]uint8, 24)
	for i := 0; i < 2; i++ {
		for j := 0; j < 3; j++ {
			for k := 0; k < 4; k++ {
				data[i+2*j+6*k] = byte(100*i + 10*j + k)
				want[12*i+4*j+k] = byte(100*i + 10*j + k)
			}
		}
	}
	v, err := Decode(arr("u1", "|", []int{2, 3, 4}, true, bytesOp(data)))
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := npy.Values[uint8](v.(*npy.Array)); !slices.Equal(got, want) {
		t.Errorf("3-D Fortran: got %v, want %v", got, want)
	}
}

// TestReadFile checks that errors name the file and that a pickle that is
// not a dict is refused.
func TestReadFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "x.pdparams")
	if err := os.WriteFile(path, pk("\x80\x02", opEmptyList, opStop), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := ReadFile(path)
	if want := "pickle: " + path + ": the pickle holds list, not a dict"; err == nil || err.Error() != want {
		t.Errorf("got %v, want %q", err, want)
	}
	if err := os.WriteFile(path, pk("\x80\x02", opGlobal, "os\nsystem\n", opStop), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = ReadFile(path)
	if want := "pickle: " + path + ": byte 2: GLOBAL: the global os.system"; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("got %v, want it to start %q", err, want)
	}
	if _, err := ReadFile(filepath.Join(dir, "missing")); err == nil || !strings.HasPrefix(err.Error(), "pickle: ") {
		t.Errorf("missing file: got %v, want a pickle: error", err)
	}
}

// TestDecodeTruncated cuts a real pickle at every length: each prefix must
// give an error, none a panic.
func TestDecodeTruncated(t *testing.T) {
	for _, name := range []string{"small.p2.pkl", "small.p4.pkl"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		for n := 0; n < len(b); n++ {
			if _, err := Decode(b[:n]); err == nil {
				t.Fatalf("%s cut to %d of %d bytes: no error", name, n, len(b))
			}
		}
	}
}
