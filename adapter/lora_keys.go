package adapter

import "strings"

// loraKeys is how a weights file names the LoRA factors of a module:
// prefix + module + suffixA for A and prefix + module + suffixB for B,
// with shapes that messages spell as layoutA and layoutB ("[r, in]").
type loraKeys struct {
	prefix, suffixA, suffixB string
	layoutA, layoutB         string
	// convs also accepts a convolution's factors: A and B of one rank, 3
	// to 5.
	convs bool
}

// factorPair is the A and B tensors of one module as the file holds them.
type factorPair struct{ a, b *Tensor }

// pair sorts tensors, in key order, into the factors of each module and
// the rest, which it gives to other with the key less the prefix; other
// may refuse a key. A key without the prefix is an error. Each module must
// have both factors, of rank 2 (or a convolution's, with convs).
func (k loraKeys) pair(tensors map[string]*Tensor, other func(key, rest string) error) (map[string]*factorPair, error) {
	pairs := map[string]*factorPair{}
	for _, key := range sortedKeys(tensors) {
		rest, ok := strings.CutPrefix(key, k.prefix)
		if !ok {
			return nil, formatErrorf("", key, "LoRA keys start with %q", k.prefix)
		}
		module, isA := strings.CutSuffix(rest, k.suffixA)
		module, isB := strings.CutSuffix(module, k.suffixB)
		if !(isA || isB) || module == "" {
			if err := other(key, rest); err != nil {
				return nil, err
			}
			continue
		}
		p := pairs[module]
		if p == nil {
			p = &factorPair{}
			pairs[module] = p
		}
		if isA {
			p.a = tensors[key]
		} else {
			p.b = tensors[key]
		}
	}
	for _, m := range sortedKeys(pairs) {
		p := pairs[m]
		keyA, keyB := k.prefix+m+k.suffixA, k.prefix+m+k.suffixB
		nameA := strings.TrimSuffix(strings.TrimPrefix(k.suffixA, "."), ".weight")
		nameB := strings.TrimSuffix(strings.TrimPrefix(k.suffixB, "."), ".weight")
		switch {
		case p.b == nil:
			return nil, formatErrorf("", keyA, "%s without %s", nameA, keyB)
		case p.a == nil:
			return nil, formatErrorf("", keyB, "%s without %s", nameB, keyA)
		case k.convs && len(p.a.Shape) >= 3 && len(p.a.Shape) <= 5 && len(p.b.Shape) == len(p.a.Shape):
		case len(p.a.Shape) != 2:
			return nil, formatErrorf("", keyA, "shape %v, want %s", p.a.Shape, k.layoutA)
		case len(p.b.Shape) != 2:
			return nil, formatErrorf("", keyB, "shape %v, want %s", p.b.Shape, k.layoutB)
		}
	}
	return pairs, nil
}

// tensorSet is the tensors of one weights file by key, as a save gathers
// them.
type tensorSet map[string]*Tensor

// add puts t at key; a key given twice is an error.
func (s tensorSet) add(key string, t *Tensor) error {
	if _, dup := s[key]; dup {
		return formatErrorf("", key, "two tensors map to the same key")
	}
	s[key] = t
	return nil
}
