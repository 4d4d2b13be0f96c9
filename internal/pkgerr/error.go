package pkgerr

import "fmt"

// Prefixed is an error whose message is Package(), ": " and Body(). Errorf
// and Format show a Prefixed operand of the same package by its Body.
type Prefixed interface {
	error
	Package() string // the package name the message starts with, such as "graph"
	Body() string    // the message after "PACKAGE: "
}

// Error is an error made by one package: its message is the package's
// name, ": ", and a body formatted like fmt.Errorf.
type Error struct {
	pkg string
	err error // the body, wrapping the %w operands
}

// Errorf returns an error of package pkg: "PKG: " followed by format
// formatted with args as fmt.Errorf does, so that each %w operand is
// wrapped. An operand that is a Prefixed error of pkg is written by its
// Body, so that the prefix appears once; errors.Is and errors.As still
// find it, and everything it wraps.
func Errorf(pkg, format string, args ...any) error {
	return &Error{pkg: pkg, err: Format(pkg, format, args...)}
}

// Error returns "PKG: BODY".
func (e *Error) Error() string { return e.pkg + ": " + e.err.Error() }

// Unwrap returns the body, which wraps the %w operands.
func (e *Error) Unwrap() error { return e.err }

// Package returns the name of the package that made the error.
func (e *Error) Package() string { return e.pkg }

// Body returns the message without its "PKG: " prefix.
func (e *Error) Body() string { return e.err.Error() }

// Format formats like fmt.Errorf, without a prefix, but writes each
// operand that is a Prefixed error of pkg by its Body. It is the body of
// Errorf, for typed errors that write their package's prefix themselves.
func Format(pkg, format string, args ...any) error {
	var shown []any // args, with pkg's errors replaced; nil while none is
	for i, a := range args {
		p, ok := a.(Prefixed)
		if !ok || p.Package() != pkg {
			continue
		}
		if shown == nil {
			shown = append([]any(nil), args...)
		}
		shown[i] = bodyOf{p}
	}
	if shown == nil {
		return fmt.Errorf(format, args...)
	}
	return fmt.Errorf(format, shown...)
}

// bodyOf shows a Prefixed error by its Body and unwraps to it.
type bodyOf struct{ p Prefixed }

func (b bodyOf) Error() string { return b.p.Body() }

func (b bodyOf) Unwrap() error { return b.p }

// Message is Format for a typed error that keeps its message as a string:
// it returns the formatted message, and an error that holds the same
// message and wraps the %w operands, or nil when there are none, for the
// typed error's Unwrap.
func Message(pkg, format string, args ...any) (msg string, cause error) {
	err := Format(pkg, format, args...)
	wraps := false
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		wraps = u.Unwrap() != nil
	case interface{ Unwrap() []error }:
		wraps = len(u.Unwrap()) > 0
	}
	if !wraps {
		return err.Error(), nil
	}
	return err.Error(), err
}
