package openai

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"sort"
	"strings"
)

// decodeBody reads the request body into v strictly: one JSON object,
// every field known and of its type. Its errors are 400s (413 for a body
// over the limit) that say what does not fit.
func decodeBody(r *http.Request, v any) error {
	data, err := io.ReadAll(r.Body)
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return &apiError{status: http.StatusRequestEntityTooLarge, typ: "invalid_request_error", code: "body_too_large",
			message: fmt.Sprintf("request body is over the limit of %d bytes", tooBig.Limit)}
	}
	if err != nil {
		return badRequest("", "cannot read the request body: %v", err)
	}
	return decodeJSON(data, v)
}

func decodeJSON(data []byte, v any) error {
	if len(bytes.TrimSpace(data)) == 0 {
		return badRequest("", "request body is empty: want a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err, data, v)
	}
	if _, err := dec.Token(); err != io.EOF {
		return badRequest("", "request body has more after its JSON object (at byte %d)", dec.InputOffset())
	}
	return nil
}

// jsonError turns encoding/json's error into one that names the field.
func jsonError(err error, data []byte, v any) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		return badRequest("", "request body is not complete JSON: it ends after %d bytes", len(data))
	case errors.As(err, &syn):
		return badRequest("", "request body is not valid JSON: %v (at byte %d)", syn, syn.Offset)
	case errors.As(err, &typ):
		// Fields of the embedded samplingFields are named as the JSON has them.
		typ.Field = strings.TrimPrefix(typ.Field, "samplingFields.")
		var doc any
		if json.Unmarshal(data, &doc) == nil {
			if p := locate(doc, strings.Split(typ.Field, "."), "", strings.Fields(typ.Value)[0]); p != "" {
				typ.Field = p // with the index of the array element at fault
			}
		}
		if typ.Field == "" {
			return badRequest("", "request body must be a JSON object, not %s", typ.Value)
		}
		return badRequest(typ.Field, "%s: want %s, got %s", typ.Field, jsonKind(typ.Type), typ.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		field := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		var doc any
		json.Unmarshal(data, &doc)
		where, known := findUnknown(doc, reflect.TypeOf(v), "", field)
		if where == "" {
			where, known = field, fieldNames(reflect.TypeOf(v))
		}
		return badRequest(where, "unknown field %q (fields there: %s)", where, strings.Join(known, ", "))
	}
	var fe *fieldError
	if errors.As(err, &fe) {
		return badRequest(fe.field, "%s: %s", fe.field, fe.msg)
	}
	return badRequest("", "request body: %v", err)
}

// fieldError is an error of a field's own decoder (a prompt that is
// neither a string nor token ids).
type fieldError struct{ field, msg string }

func (e *fieldError) Error() string { return e.field + ": " + e.msg }

// jsonKind names a Go type as JSON does.
func jsonKind(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Slice, reflect.Array:
		return "an array"
	}
	return "an object"
}

// fieldNames lists the JSON names of a struct's fields, those of
// embedded structs included.
func fieldNames(t reflect.Type) []string {
	var names []string
	for _, f := range jsonFields(t) {
		names = append(names, f.name)
	}
	return names
}

type jsonField struct {
	name string
	typ  reflect.Type
}

func jsonFields(t reflect.Type) []jsonField {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return nil
	}
	var out []jsonField
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Anonymous && f.Tag.Get("json") == "" {
			out = append(out, jsonFields(f.Type)...)
			continue
		}
		if n, _, _ := strings.Cut(f.Tag.Get("json"), ","); n != "" && n != "-" {
			out = append(out, jsonField{n, f.Type})
		}
	}
	return out
}

// findUnknown finds the key name that the struct type t does not have in
// the decoded JSON doc, and returns its path ("messages[1].foo") and the
// fields of the object it is in; "" where it is not found.
func findUnknown(doc any, t reflect.Type, path, name string) (string, []string) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch v := doc.(type) {
	case map[string]any:
		fields := jsonFields(t)
		if t.Kind() != reflect.Struct {
			return "", nil
		}
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			var ft reflect.Type
			for _, f := range fields {
				if f.name == k { // encoding/json also matches names case-insensitively
					ft = f.typ
				}
			}
			if ft == nil {
				for _, f := range fields {
					if strings.EqualFold(f.name, k) {
						ft = f.typ
					}
				}
			}
			if ft == nil && k == name {
				return join(path, k), fieldNames(t)
			}
			if ft != nil && ft != rawMessageType {
				if p, known := findUnknown(v[k], ft, join(path, k), name); p != "" {
					return p, known
				}
			}
		}
	case []any:
		if t.Kind() != reflect.Slice && t.Kind() != reflect.Array {
			return "", nil
		}
		for i, e := range v {
			if p, known := findUnknown(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i), name); p != "" {
				return p, known
			}
		}
	}
	return "", nil
}

// locate finds the value that segs names in doc and that is of JSON kind
// kind ("string", "number", ...), through arrays, and returns its path
// with indices ("messages[2].role"); "" where there is none.
func locate(doc any, segs []string, path, kind string) string {
	switch v := doc.(type) {
	case []any:
		for i, e := range v {
			if p := locate(e, segs, fmt.Sprintf("%s[%d]", path, i), kind); p != "" {
				return p
			}
		}
		return ""
	case map[string]any:
		if len(segs) > 0 {
			if e, ok := v[segs[0]]; ok {
				return locate(e, segs[1:], join(path, segs[0]), kind)
			}
			return ""
		}
	}
	if len(segs) == 0 && jsonValueKind(doc) == kind {
		return path
	}
	return ""
}

// jsonValueKind names a decoded JSON value as encoding/json's type errors do.
func jsonValueKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "bool"
	case float64:
		return "number"
	case string:
		return "string"
	case []any:
		return "array"
	}
	return "object"
}

var rawMessageType = reflect.TypeOf(json.RawMessage(nil))

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}
