package pickle

// The opcodes of pickle protocols 0 to 5, as Python's pickletools names
// them. The decoder executes the ones marked "read"; the others are named
// in errors only.
const (
	opMark           = '(' // read
	opStop           = '.' // read
	opPop            = '0'
	opPopMark        = '1'
	opDup            = '2'
	opFloat          = 'F'
	opInt            = 'I'
	opBinInt         = 'J' // read
	opBinInt1        = 'K' // read
	opLong           = 'L'
	opBinInt2        = 'M' // read
	opNone           = 'N' // read
	opPersID         = 'P'
	opBinPersID      = 'Q'
	opReduce         = 'R' // read
	opString         = 'S'
	opBinString      = 'T'
	opShortBinString = 'U'
	opUnicode        = 'V'
	opBinUnicode     = 'X' // read
	opAppend         = 'a' // read
	opBuild          = 'b' // read
	opGlobal         = 'c' // read
	opDict           = 'd'
	opEmptyDict      = '}' // read
	opAppends        = 'e' // read
	opGet            = 'g'
	opBinGet         = 'h' // read
	opInst           = 'i'
	opLongBinGet     = 'j' // read
	opList           = 'l'
	opEmptyList      = ']' // read
	opObj            = 'o'
	opPut            = 'p'
	opBinPut         = 'q' // read
	opLongBinPut     = 'r' // read
	opSetItem        = 's' // read
	opTuple          = 't' // read
	opEmptyTuple     = ')' // read
	opSetItems       = 'u' // read
	opBinFloat       = 'G' // read

	// Protocol 2.
	opProto    = 0x80 // read
	opNewObj   = 0x81
	opExt1     = 0x82
	opExt2     = 0x83
	opExt4     = 0x84
	opTuple1   = 0x85 // read
	opTuple2   = 0x86 // read
	opTuple3   = 0x87 // read
	opNewTrue  = 0x88 // read
	opNewFalse = 0x89 // read
	opLong1    = 0x8a // read
	opLong4    = 0x8b // read

	// Protocol 3.
	opBinBytes      = 'B' // read
	opShortBinBytes = 'C' // read

	// Protocol 4.
	opShortBinUnicode = 0x8c // read
	opBinUnicode8     = 0x8d // read
	opBinBytes8       = 0x8e // read
	opEmptySet        = 0x8f
	opAddItems        = 0x90
	opFrozenSet       = 0x91
	opNewObjEx        = 0x92
	opStackGlobal     = 0x93 // read
	opMemoize         = 0x94 // read
	opFrame           = 0x95 // read

	// Protocol 5.
	opByteArray8     = 0x96 // read
	opNextBuffer     = 0x97
	opReadOnlyBuffer = 0x98
)

var opNames = map[byte]string{
	opMark: "MARK", opStop: "STOP", opPop: "POP", opPopMark: "POP_MARK", opDup: "DUP",
	opFloat: "FLOAT", opInt: "INT", opBinInt: "BININT", opBinInt1: "BININT1", opLong: "LONG",
	opBinInt2: "BININT2", opNone: "NONE", opPersID: "PERSID", opBinPersID: "BINPERSID",
	opReduce: "REDUCE", opString: "STRING", opBinString: "BINSTRING", opShortBinString: "SHORT_BINSTRING",
	opUnicode: "UNICODE", opBinUnicode: "BINUNICODE", opAppend: "APPEND", opBuild: "BUILD",
	opGlobal: "GLOBAL", opDict: "DICT", opEmptyDict: "EMPTY_DICT", opAppends: "APPENDS",
	opGet: "GET", opBinGet: "BINGET", opInst: "INST", opLongBinGet: "LONG_BINGET", opList: "LIST",
	opEmptyList: "EMPTY_LIST", opObj: "OBJ", opPut: "PUT", opBinPut: "BINPUT", opLongBinPut: "LONG_BINPUT",
	opSetItem: "SETITEM", opTuple: "TUPLE", opEmptyTuple: "EMPTY_TUPLE", opSetItems: "SETITEMS",
	opBinFloat: "BINFLOAT", opProto: "PROTO", opNewObj: "NEWOBJ", opExt1: "EXT1", opExt2: "EXT2",
	opExt4: "EXT4", opTuple1: "TUPLE1", opTuple2: "TUPLE2", opTuple3: "TUPLE3", opNewTrue: "NEWTRUE",
	opNewFalse: "NEWFALSE", opLong1: "LONG1", opLong4: "LONG4", opBinBytes: "BINBYTES",
	opShortBinBytes: "SHORT_BINBYTES", opShortBinUnicode: "SHORT_BINUNICODE", opBinUnicode8: "BINUNICODE8",
	opBinBytes8: "BINBYTES8", opEmptySet: "EMPTY_SET", opAddItems: "ADDITEMS", opFrozenSet: "FROZENSET",
	opNewObjEx: "NEWOBJ_EX", opStackGlobal: "STACK_GLOBAL", opMemoize: "MEMOIZE", opFrame: "FRAME",
	opByteArray8: "BYTEARRAY8", opNextBuffer: "NEXT_BUFFER", opReadOnlyBuffer: "READONLY_BUFFER",
}

// opName returns the pickletools name of op, or its hex value for a byte
// that is no opcode.
func opName(op byte) string {
	if n, ok := opNames[op]; ok {
		return n
	}
	return "0x" + string("0123456789abcdef"[op>>4]) + string("0123456789abcdef"[op&15])
}
