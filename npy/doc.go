// Package npy reads and writes NumPy .npy files.
//
// An .npy file holds one n-dimensional array: a magic string, a format
// version, a header that is a Python dict literal
// ({'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }) and the raw
// element bytes. An Array keeps those bytes as they are (little-endian, C
// order), so that a file read and written again is unchanged, and offers
// typed copies through Values and New.
//
// # Supported arrays
//
// Read accepts format versions 1.0, 2.0 and 3.0. Write produces version 1.0,
// or 2.0 when the header does not fit 1.0's 65535 bytes. The element types
// are those that ONNX models take as inputs and give as outputs:
//
//	'<f2' float16   '<f4' float32   '<f8' float64   '|b1' bool
//	'|i1' int8      '<i2' int16     '<i4' int32     '<i8' int64
//	'|u1' uint8     '<u2' uint16    '<u4' uint32    '<u8' uint64
//
// # Limits
//
// Big-endian data ('>f4'), Fortran order (fortran_order: True), structured
// and object dtypes, complex numbers and strings are rejected with an error
// that names the file and what was found. No data is converted: a file that
// holds float64 gives an Array of Float64, whatever the caller wants.
package npy
