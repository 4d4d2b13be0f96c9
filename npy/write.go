package npy

import (
	"io"
	"os"
	"path/filepath"
)

// Write writes a as an .npy file in format version 1.0 (2.0 when the header
// needs it), with the same bytes numpy.save writes.
func Write(w io.Writer, a *Array) error {
	if err := a.Validate(); err != nil {
		return err
	}
	if _, err := w.Write(encodeHeader(a.DType, a.Shape, 1)); err != nil {
		return errorf("%v", err)
	}
	if _, err := w.Write(a.Data); err != nil {
		return errorf("%v", err)
	}
	return nil
}

// WriteFile writes a to path. It writes a temporary file in the same folder
// and renames it, so that path holds either the whole array or what it held
// before, never part of one.
func WriteFile(path string, a *Array) (err error) {
	if err := a.Validate(); err != nil {
		return errorf("%s: %v", path, unwrapPrefix(err))
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return errorf("%v", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := Write(f, a); err != nil {
		return errorf("%s: %v", path, unwrapPrefix(err))
	}
	if err := f.Sync(); err != nil {
		return errorf("%s: %v", path, err)
	}
	if err := f.Close(); err != nil {
		return errorf("%s: %v", path, err)
	}
	if err := os.Chmod(f.Name(), 0o644); err != nil {
		return errorf("%s: %v", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return errorf("%v", err)
	}
	return nil
}
