package adapter

import (
	"fmt"
	"strconv"
)

// FormatError reports a file or buffer whose content is malformed or does
// not fit the adapter: a bad header, an offset out of range, a key without
// its partner, a shape that disagrees with the config. Callers can inspect
// File and Key with errors.As.
type FormatError struct {
	File string // path of the file at fault, or "" for in-memory data
	Key  string // tensor, parameter or JSON key at fault, or ""
	Msg  string // what is wrong
}

// Error returns "adapter: FILE: KEY: MSG", leaving out the parts that are empty.
func (e *FormatError) Error() string {
	s := "adapter: "
	if e.File != "" {
		s += e.File + ": "
	}
	if e.Key != "" {
		s += strconv.Quote(e.Key) + ": "
	}
	return s + e.Msg
}

// formatErrorf returns a *FormatError for file and key.
func formatErrorf(file, key, format string, args ...any) *FormatError {
	return &FormatError{File: file, Key: key, Msg: fmt.Sprintf(format, args...)}
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

// errorf returns an error prefixed with the package name.
func errorf(format string, args ...any) error {
	return fmt.Errorf("adapter: "+format, args...)
}
