package rewrite

import (
	"encoding/json"

	"github.com/peftonnx/peftonnx/dtype"
)

// The metadata that Inject and InjectPrefix write stores element types as
// ONNX numbers ("dtype":10), as it always has; dtype.Type marshals to its
// name, so Site and PrefixSite convert their type fields themselves.

// MarshalJSON writes s with DType and BaseDType as ONNX numbers.
func (s Site) MarshalJSON() ([]byte, error) {
	type plain Site
	return json.Marshal(struct {
		plain
		DType     int32 `json:"dtype"`
		BaseDType int32 `json:"base_dtype"`
	}{plain(s), int32(s.DType), int32(s.BaseDType)})
}

// UnmarshalJSON reads a Site whose DType and BaseDType are ONNX numbers.
func (s *Site) UnmarshalJSON(b []byte) error {
	type plain Site
	v := struct {
		*plain
		DType     int32 `json:"dtype"`
		BaseDType int32 `json:"base_dtype"`
	}{plain: (*plain)(s)}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	s.DType, s.BaseDType = dtype.Type(v.DType), dtype.Type(v.BaseDType)
	return nil
}

// MarshalJSON writes s with KVDType and ParamDType as ONNX numbers.
func (s PrefixSite) MarshalJSON() ([]byte, error) {
	type plain PrefixSite
	return json.Marshal(struct {
		plain
		KVDType    int32 `json:"kv_dtype"`
		ParamDType int32 `json:"param_dtype"`
	}{plain(s), int32(s.KVDType), int32(s.ParamDType)})
}

// UnmarshalJSON reads a PrefixSite whose KVDType and ParamDType are ONNX
// numbers.
func (s *PrefixSite) UnmarshalJSON(b []byte) error {
	type plain PrefixSite
	v := struct {
		*plain
		KVDType    int32 `json:"kv_dtype"`
		ParamDType int32 `json:"param_dtype"`
	}{plain: (*plain)(s)}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	s.KVDType, s.ParamDType = dtype.Type(v.KVDType), dtype.Type(v.ParamDType)
	return nil
}
