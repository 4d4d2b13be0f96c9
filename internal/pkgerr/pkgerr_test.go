package pkgerr

import (
	"errors"
	"fmt"
	"io/fs"
	"testing"
)

func TestErrorf(t *testing.T) {
	inner := Errorf("graph", "tensor %q: bad data", "w")
	other := Errorf("rewrite", "layer %d", 3)
	missing := &fs.PathError{Op: "open", Path: "m.onnx", Err: fs.ErrNotExist}
	tests := []struct {
		reason string
		err    error
		want   string
	}{
		{"a plain message", Errorf("graph", "empty model"), "graph: empty model"},
		{"a same-package operand is shown once", Errorf("graph", "%s: %w", "m.onnx", inner), `graph: m.onnx: tensor "w": bad data`},
		{"twice nested", Errorf("graph", "saving: %w", Errorf("graph", "%s: %w", "m.onnx", inner)), `graph: saving: m.onnx: tensor "w": bad data`},
		{"another package keeps its prefix", Errorf("graph", "x: %w", other), "graph: x: rewrite: layer 3"},
		{"a foreign error", Errorf("npy", "%s: %w", "a.npy", missing), "npy: a.npy: open m.onnx: file does not exist"},
		{"a reworded cause", Errorf("npy", "%s: %w", "a.npy", Reworded("no such file", missing)), "npy: a.npy: no such file"},
		{"Format writes no prefix", Format("graph", "%w", inner), `tensor "w": bad data`},
		{"a percent verb without operands", Errorf("graph", "100%%"), "graph: 100%"},
	}
	for i, test := range tests {
		if got := test.err.Error(); got != test.want {
			t.Errorf("test %d (%s): got %q want %q", i, test.reason, got, test.want)
		}
	}
}

func TestErrorfKeepsTheChain(t *testing.T) {
	missing := &fs.PathError{Op: "open", Path: "m.onnx", Err: fs.ErrNotExist}
	inner := Errorf("graph", "%s: %w", "m.onnx", Reworded("no such file", missing))
	outer := Errorf("graph", "loading: %w", inner)
	wrapped := fmt.Errorf("cli: %w", Errorf("train", "model: %w", outer))
	for i, err := range []error{inner, outer, wrapped} {
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("test %d: errors.Is(%q, fs.ErrNotExist) is false", i, err)
		}
		var pe *fs.PathError
		if !errors.As(err, &pe) || pe != missing {
			t.Errorf("test %d: errors.As(%q, *fs.PathError) did not find the cause", i, err)
		}
		var e *Error
		if !errors.As(err, &e) {
			t.Errorf("test %d: errors.As(%q, *Error) is false", i, err)
		}
	}
	var p Prefixed
	if !errors.As(outer, &p) || p.Package() != "graph" || p.Body() != "loading: m.onnx: no such file" {
		t.Errorf("got Prefixed %v want package graph, body %q", p, "loading: m.onnx: no such file")
	}
}

func TestMessage(t *testing.T) {
	missing := &fs.PathError{Op: "open", Path: "w.bin", Err: fs.ErrNotExist}
	tests := []struct {
		reason    string
		format    string
		args      []any
		want      string
		wantCause bool
	}{
		{"no operand", "bad offset %q", []any{"x"}, `bad offset "x"`, false},
		{"a %w operand", "reading: %w", []any{missing}, "reading: open w.bin: file does not exist", true},
		{"two %w operands", "%w and %w", []any{missing, missing}, "open w.bin: file does not exist and open w.bin: file does not exist", true},
		{"a same-package operand", "x: %w", []any{Errorf("graph", "y")}, "x: y", true},
	}
	for i, test := range tests {
		msg, cause := Message("graph", test.format, test.args...)
		if msg != test.want || (cause != nil) != test.wantCause {
			t.Errorf("test %d (%s): got %q, cause %v want %q, cause %v", i, test.reason, msg, cause, test.want, test.wantCause)
		}
		if cause != nil && cause.Error() != msg {
			t.Errorf("test %d (%s): cause says %q, message %q", i, test.reason, cause, msg)
		}
		if test.wantCause && test.args[0] == missing && !errors.Is(cause, fs.ErrNotExist) {
			t.Errorf("test %d (%s): cause %v does not wrap the operand", i, test.reason, cause)
		}
	}
}
