package pickle

import (
	"fmt"

	"github.com/peftonnx/peftonnx/internal/pkgerr"
)

// Error reports a pickle that the decoder refuses or cannot read: the byte
// offset and opcode at fault, and what is wrong.
type Error struct {
	File   string // the file, or "" for a buffer
	Offset int64  // byte offset of the opcode at fault, or -1 for the file as a whole
	Op     byte   // the opcode at Offset
	Msg    string // what is wrong
	err    error  // the error that Msg tells of, or nil
}

// Error returns "pickle: FILE: byte OFFSET: OPCODE: MSG", leaving out the
// parts that are empty.
func (e *Error) Error() string {
	s := "pickle: "
	if e.File != "" {
		s += e.File + ": "
	}
	if e.Offset >= 0 {
		s += fmt.Sprintf("byte %d: %s: ", e.Offset, opName(e.Op))
	}
	return s + e.Msg
}

// Unwrap returns the error that Msg tells of, or nil.
func (e *Error) Unwrap() error { return e.err }

// errorf returns an error prefixed with the package name, once (see
// package pkgerr): operands are wrapped with %w.
func errorf(format string, args ...any) error {
	return pkgerr.Errorf("pickle", format, args...)
}
