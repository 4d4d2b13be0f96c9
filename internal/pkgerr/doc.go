// Package pkgerr is the error convention of peftonnx's packages: every
// error a package returns names the package once, as a prefix
// ("graph: model.onnx: no such file"), and wraps its cause, so that
// errors.Is and errors.As see through it.
//
// # Convention
//
// Each package makes its errors with a private errorf that calls Errorf
// with the package's name:
//
//	func errorf(format string, args ...any) error {
//		return pkgerr.Errorf("graph", format, args...)
//	}
//
// An error operand is always formatted with %w, never %v or %s, so that
// the chain is kept. When the operand is an error of the same package (a
// Prefixed error with the same Package), Errorf shows it by its Body: the
// prefix is written once, by the outermost error, and no code cuts it out
// of a message. Errors of other packages keep their own prefix
// ("rewrite: layer 3: graph: ..."), which says where each part comes from.
//
// A typed error of a package (adapter.FormatError) implements Prefixed,
// and formats its message with Format, so that it follows the same rule.
//
// Reworded tells a cause in the package's own words ("no such file")
// while keeping it in the chain for errors.Is (fs.ErrNotExist).
package pkgerr
