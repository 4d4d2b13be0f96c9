package tokenizer

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"

	"github.com/peftonnx/peftonnx/internal/pkgerr"
)

// errorf returns an error prefixed with the package name, once (see
// package pkgerr): operands are wrapped with %w.
func errorf(format string, args ...any) error {
	return pkgerr.Errorf("tokenizer", format, args...)
}

// maxQuoted is the most characters of an offending value that an error
// message quotes, so that a hostile file cannot make a message of megabytes.
const maxQuoted = 60

// quote returns s quoted for an error message, cut after maxQuoted
// characters.
func quote(s string) string {
	n := 0
	for i := range s {
		if n == maxQuoted {
			return strconv.Quote(s[:i]) + "…"
		}
		n++
	}
	return strconv.Quote(s)
}

// jsonError is a JSON decoding error at a key of tokenizer.json, told in
// one short line: where, and what was found instead of what.
type jsonError struct {
	key string // the key path, such as "model.vocab"
	err error
}

func (e *jsonError) Error() string {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(e.err, &syntax):
		return fmt.Sprintf("%s: invalid JSON at byte %d: %s", e.key, syntax.Offset, syntax.Error())
	case errors.As(e.err, &typ):
		key := e.key
		if typ.Field != "" {
			key += "." + typ.Field
		}
		return fmt.Sprintf("%s: got a JSON %s, want %s", cutKey(key), typ.Value, jsonKind(typ.Type))
	}
	return e.key + ": " + e.err.Error()
}

func (e *jsonError) Unwrap() error { return e.err }

// cutKey shortens a key path that holds a long map key.
func cutKey(key string) string {
	if len(key) <= 2*maxQuoted {
		return key
	}
	return quote(key)
}

// jsonKind names the JSON value that decodes into a Go type.
func jsonKind(t reflect.Type) string {
	if t == nil {
		return "another value"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "an integer"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer from 0 to " + strconv.FormatUint(1<<(8*t.Size())-1, 10)
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	case reflect.Pointer:
		return jsonKind(t.Elem())
	}
	return "another value"
}

// decodeJSON decodes raw into v, and reports an error at key.
func decodeJSON(raw json.RawMessage, key string, v any) error {
	if err := json.Unmarshal(raw, v); err != nil {
		return &jsonError{key: key, err: err}
	}
	return nil
}
