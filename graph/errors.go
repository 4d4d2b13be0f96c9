package graph

import (
	"strconv"

	"github.com/peftonnx/peftonnx/internal/pkgerr"
)

// FormatError reports a model whose content is malformed: bytes that are
// not an ONNX model, a tensor whose data disagrees with its dims, external
// data that is out of range, outside the model's folder or of another save
// of the model. A missing or unreadable file is not a FormatError: its
// error wraps the *fs.PathError, so that errors.Is(err, fs.ErrNotExist)
// holds. Callers can inspect File and Tensor with errors.As.
type FormatError struct {
	File   string // path of the model, or "" for a model parsed from bytes
	Tensor string // the tensor at fault, or ""
	Msg    string // what is wrong
	err    error  // Msg as an error, wrapping the cause; nil when there is none
}

// Error returns "graph: FILE: tensor "TENSOR": MSG", leaving out the parts
// that are empty.
func (e *FormatError) Error() string { return "graph: " + e.Body() }

// Body returns the message after "graph: ".
func (e *FormatError) Body() string {
	s := ""
	if e.File != "" {
		s += e.File + ": "
	}
	if e.Tensor != "" {
		s += "tensor " + strconv.Quote(e.Tensor) + ": "
	}
	return s + e.Msg
}

// Package returns "graph", the package whose prefix Error writes.
func (e *FormatError) Package() string { return "graph" }

// Unwrap returns the cause that Msg tells of, or nil.
func (e *FormatError) Unwrap() error { return e.err }

// formatErrorf returns a *FormatError for tensor (or "") of a model that
// is not from a file yet; Load sets File.
func formatErrorf(tensor, format string, args ...any) *FormatError {
	msg, cause := pkgerr.Message("graph", format, args...)
	return &FormatError{Tensor: tensor, Msg: msg, err: cause}
}

// inFile returns err with File set to path when err is a *FormatError
// that names no file yet, and nil otherwise.
func inFile(err error, path string) *FormatError {
	if fe, ok := err.(*FormatError); ok && fe.File == "" {
		c := *fe
		c.File = path
		return &c
	}
	return nil
}

// errorf returns an error prefixed with the package name, once (see
// package pkgerr): operands are wrapped with %w.
func errorf(format string, args ...any) error {
	return pkgerr.Errorf("graph", format, args...)
}
