package adapter

import (
	"strconv"

	"github.com/peftonnx/peftonnx/internal/pkgerr"
)

// FormatError reports a file or buffer whose content is malformed or does
// not fit the adapter: a bad header, an offset out of range, a key without
// its partner, a shape that disagrees with the config. Callers can inspect
// File and Key with errors.As.
type FormatError struct {
	File string // path of the file at fault, or "" for in-memory data
	Key  string // tensor, parameter or JSON key at fault, or ""
	Msg  string // what is wrong
	err  error  // Msg as an error, wrapping the cause; nil when there is none
}

// Error returns "adapter: FILE: KEY: MSG", leaving out the parts that are empty.
func (e *FormatError) Error() string { return "adapter: " + e.Body() }

// Body returns the message after "adapter: ".
func (e *FormatError) Body() string {
	s := ""
	if e.File != "" {
		s += e.File + ": "
	}
	if e.Key != "" {
		s += strconv.Quote(e.Key) + ": "
	}
	return s + e.Msg
}

// Package returns "adapter", the package whose prefix Error writes.
func (e *FormatError) Package() string { return "adapter" }

// Unwrap returns the cause that Msg tells of, or nil.
func (e *FormatError) Unwrap() error { return e.err }

// formatErrorf returns a *FormatError for file and key. Operands are
// wrapped with %w, and an adapter error among them is shown without its
// prefix (see package pkgerr).
func formatErrorf(file, key, format string, args ...any) *FormatError {
	msg, cause := pkgerr.Message("adapter", format, args...)
	return &FormatError{File: file, Key: key, Msg: msg, err: cause}
}

// inFile returns err with File set to file when err is a *FormatError that
// names no file yet; other errors are returned as they are.
func inFile(err error, file string) error {
	if fe, ok := err.(*FormatError); ok && fe.File == "" {
		c := *fe
		c.File = file
		return &c
	}
	return err
}

// errorf returns an error prefixed with the package name, once (see
// package pkgerr): operands are wrapped with %w.
func errorf(format string, args ...any) error {
	return pkgerr.Errorf("adapter", format, args...)
}
