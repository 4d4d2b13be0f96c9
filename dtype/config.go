package dtype

import (
	"fmt"
	"strings"
)

// Parse parses an element type as configs spell it: a name that String
// returns ("float32", "bfloat16", "int8", …), in any case, or one of the
// aliases "fp32", "fp16", "half" and "bf16". The empty string means
// float32, as in PaddleNLP and PEFT configs that leave the dtype out.
// "undefined" is refused.
func Parse(s string) (Type, error) {
	switch strings.ToLower(s) {
	case "", "fp32":
		return Float32, nil
	case "fp16", "half":
		return Float16, nil
	case "bf16":
		return BFloat16, nil
	}
	for t := Undefined + 1; t.known(); t++ {
		if strings.EqualFold(s, infos[t].name) {
			return t, nil
		}
	}
	return Undefined, fmt.Errorf("dtype: unknown dtype %q", s)
}

// MarshalText writes the config spelling of t, its String. Undefined and
// unknown numbers are an error: a config must name its type.
func (t Type) MarshalText() ([]byte, error) {
	if t == Undefined || !t.known() {
		return nil, fmt.Errorf("dtype: cannot write element type %s", t)
	}
	return []byte(infos[t].name), nil
}

// UnmarshalText reads a config spelling, as Parse does; the empty string
// means float32.
func (t *Type) UnmarshalText(b []byte) error {
	v, err := Parse(string(b))
	if err != nil {
		return err
	}
	*t = v
	return nil
}
