// Package pickle reads and writes the small part of Python's pickle format
// that paddle.save uses for a state dict (.pdparams, .pdopt): a dict from
// str to numpy.ndarray, with a few dicts, lists and tuples of plain values
// beside the arrays. It is not a general unpickler.
//
// # Limits
//
// Decode reads protocols 2 to 5 as CPython 3 writes them (with or without
// numpy 2's module names) and refuses everything else with an *Error that
// names the byte offset, the opcode and what is wrong. It never imports
// or calls anything: a GLOBAL is only a name, and the only names it takes
// are
//
//	collections.OrderedDict                      → *Dict
//	numpy.core.multiarray._reconstruct, numpy.ndarray, numpy.dtype
//	numpy.core.numeric._frombuffer (protocol 5, in-band buffers)
//	_codecs.encode(str, "latin1"), builtins.bytes (protocol 2's bytes)
//
// and numpy._core.* for numpy 2. Arrays must have a plain numeric dtype:
// bool, int8 to int64, uint8 to uint64, float16 to float64, little- or
// big-endian, C or Fortran order; they come back as *npy.Array in C order,
// little-endian. numpy has no bfloat16: paddle stores a bfloat16 tensor as
// a uint16 array of its bits (np.uint16), and so it comes back here;
// which arrays are bfloat16 is for the caller to know. Not read: object,
// string, structured, complex and datetime arrays, numpy scalars, sets,
// class instances, Python 2 strings, protocol 0 and 1, out-of-band
// buffers, integers beyond 64 bits, dict keys other than str, and any
// bytes after the STOP.
//
// The opcodes read are PROTO, FRAME, STOP, MARK, the memo (BINPUT,
// LONG_BINPUT, MEMOIZE, BINGET, LONG_BINGET), GLOBAL and STACK_GLOBAL,
// REDUCE, BUILD, None/True/False, BININT1/2, BININT, LONG1, LONG4,
// BINFLOAT, the binary str and bytes opcodes (SHORT_BINUNICODE,
// BINUNICODE, BINUNICODE8, SHORT_BINBYTES, BINBYTES, BINBYTES8,
// BYTEARRAY8), the tuple opcodes, EMPTY_LIST, APPEND, APPENDS,
// EMPTY_DICT, SETITEM and SETITEMS.
//
// Hostile input gets an error, never a panic or an allocation out of
// proportion to its size: every length is checked against the bytes that
// are left (and against the frame it is in), an array's shape must match
// its data exactly, and the stack, the memo, open MARKs and the nesting of
// containers are bounded. A container cannot be put inside itself, nor
// changed once it sits inside another, and the tree of values, with
// references repeated through the memo counted each time, may be at most
// four times the size of the input plus 1 MiB, so that walking the result
// is bounded too.
//
// Encode writes protocol 2 or 4 the way CPython and numpy do (memoized
// globals and dtypes, protocol 4 frames, batches of 1000), so that
// pickle.load, and so paddle.load, reads it back.
package pickle
