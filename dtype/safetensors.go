package dtype

// Safetensors returns the safetensors header spelling of t, such as "F32"
// or "BF16", or "" where the format has none.
func (t Type) Safetensors() string {
	if !t.known() {
		return ""
	}
	return infos[t].safetensors
}

// ParseSafetensors returns the Type of a safetensors header dtype. The
// spelling is case-sensitive, as the format defines it.
func ParseSafetensors(s string) (Type, bool) {
	if s == "" {
		return Undefined, false
	}
	for t := range infos {
		if infos[t].safetensors == s {
			return Type(t), true
		}
	}
	return Undefined, false
}
