package rewrite

import (
	"encoding/json"

	"github.com/peftonnx/peftonnx/dtype"
)

// The metadata that Inject and InjectPrefix write stores element types as
// ONNX numbers ("dtype":10), as it always has; dtype.Type marshals to its
// name, so Site and PrefixSite give their type fields as onnxNumbers. Each
// has one jsonForm, which MarshalJSON writes and UnmarshalJSON reads into.

// onnxNumber writes and reads the element type it points to as its ONNX
// number.
type onnxNumber struct{ t *dtype.Type }

// MarshalJSON writes the type's ONNX number.
func (n onnxNumber) MarshalJSON() ([]byte, error) { return json.Marshal(int32(*n.t)) }

// UnmarshalJSON reads an ONNX number into the type.
func (n onnxNumber) UnmarshalJSON(b []byte) error {
	var v int32
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*n.t = dtype.Type(v)
	return nil
}

// jsonForm returns s as its JSON holds it: its fields, with DType and
// BaseDType as ONNX numbers.
func (s *Site) jsonForm() any {
	type plain Site
	return &struct {
		*plain
		DType     onnxNumber `json:"dtype"`
		BaseDType onnxNumber `json:"base_dtype"`
	}{(*plain)(s), onnxNumber{&s.DType}, onnxNumber{&s.BaseDType}}
}

// MarshalJSON writes s with DType and BaseDType as ONNX numbers.
func (s Site) MarshalJSON() ([]byte, error) { return json.Marshal(s.jsonForm()) }

// UnmarshalJSON reads a Site whose DType and BaseDType are ONNX numbers.
func (s *Site) UnmarshalJSON(b []byte) error { return json.Unmarshal(b, s.jsonForm()) }

// jsonForm returns s as its JSON holds it: its fields, with KVDType and
// ParamDType as ONNX numbers.
func (s *PrefixSite) jsonForm() any {
	type plain PrefixSite
	return &struct {
		*plain
		KVDType    onnxNumber `json:"kv_dtype"`
		ParamDType onnxNumber `json:"param_dtype"`
	}{(*plain)(s), onnxNumber{&s.KVDType}, onnxNumber{&s.ParamDType}}
}

// MarshalJSON writes s with KVDType and ParamDType as ONNX numbers.
func (s PrefixSite) MarshalJSON() ([]byte, error) { return json.Marshal(s.jsonForm()) }

// UnmarshalJSON reads a PrefixSite whose KVDType and ParamDType are ONNX
// numbers.
func (s *PrefixSite) UnmarshalJSON(b []byte) error { return json.Unmarshal(b, s.jsonForm()) }
