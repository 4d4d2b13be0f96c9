package dtype

// Descr returns the NumPy descriptor of t as an .npy header holds it,
// little-endian: "<f4", "<i8", and "|b1", "|i1", "|u1" for the one-byte
// types. It returns "" for types NumPy has no descriptor for.
func (t Type) Descr() string {
	if !t.known() {
		return ""
	}
	return infos[t].descr
}

// ParseDescr returns the Type of a NumPy descriptor. One-byte types are
// accepted with any byte-order mark ('|', '<', '>', '='); wider ones only
// little-endian ('<'). ok is false for anything else, big-endian
// descriptors included; BigEndian tells those apart.
func ParseDescr(descr string) (t Type, ok bool) {
	if len(descr) < 2 {
		return Undefined, false
	}
	t, ok = descrKind(descr[1:])
	if !ok {
		return Undefined, false
	}
	switch order := descr[0]; {
	case t.Size() == 1 && (order == '|' || order == '<' || order == '>' || order == '='):
		return t, true
	case order == '<':
		return t, true
	}
	return Undefined, false
}

// BigEndian returns the Type of a big-endian descriptor of a type wider
// than one byte, such as ">f4", and ok false for any other descriptor.
func BigEndian(descr string) (t Type, ok bool) {
	if len(descr) < 2 || descr[0] != '>' {
		return Undefined, false
	}
	t, ok = descrKind(descr[1:])
	if !ok || t.Size() == 1 {
		return Undefined, false
	}
	return t, true
}

// descrKind finds the type whose descriptor ends in kind ("f4", "b1", …).
func descrKind(kind string) (Type, bool) {
	for t := range infos {
		if d := infos[t].descr; d != "" && d[1:] == kind {
			return Type(t), true
		}
	}
	return Undefined, false
}
