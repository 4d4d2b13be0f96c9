package feed

import "github.com/peftonnx/peftonnx/internal/pkgerr"

// errorf returns an error prefixed with the package name, once (see
// package pkgerr): operands are wrapped with %w.
func errorf(format string, args ...any) error {
	return pkgerr.Errorf("feed", format, args...)
}
