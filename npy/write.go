package npy

import (
	"io"

	"github.com/peftonnx/peftonnx/internal/atomicfile"
)

// Write writes a as an .npy file in format version 1.0 (2.0 when the header
// needs it), with the same bytes numpy.save writes.
func Write(w io.Writer, a *Array) error {
	if err := a.Validate(); err != nil {
		return err
	}
	if _, err := w.Write(encodeHeader(a.DType, a.Shape, 1)); err != nil {
		return errorf("%w", err)
	}
	if _, err := w.Write(a.Data); err != nil {
		return errorf("%w", err)
	}
	return nil
}

// WriteFile writes a to path. It writes a temporary file in the same folder
// and renames it, so that path holds either the whole array or what it held
// before, never part of one.
func WriteFile(path string, a *Array) (err error) {
	if err := a.Validate(); err != nil {
		return errorf("%s: %w", path, err)
	}
	f, err := atomicfile.Create(path, 0o644)
	if err != nil {
		return errorf("%w", err)
	}
	defer f.Abort() // a no-op once committed
	if err := Write(f, a); err != nil {
		return errorf("%s: %w", path, err)
	}
	if err := f.Commit(); err != nil {
		return errorf("%w", err)
	}
	return nil
}
