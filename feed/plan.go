package feed

import (
	"strconv"
)

// Slot is one input of a model and what it is for.
type Slot struct {
	Input
	Role Role
	// Layer is the layer index that a cache's or state's name gives, -1
	// where it gives none.
	Layer int
	// Present names the output that returns the next value of a cache or
	// state, "" where the model has none.
	Present string
	// BatchAxis is the axis that the batch sizes, LengthAxis the axis
	// that grows with the tokens (the sequence for ids, the past plus
	// sequence for masks, the past for caches); -1 where there is none.
	BatchAxis, LengthAxis int
	// sizes holds the size of each axis where the input or its present
	// output declares it, -1 where neither does.
	sizes []int64
}

// Plan is what Classify found: a Slot for every input, in the model's
// order.
type Plan struct {
	slots  []Slot
	byName map[string]int
}

// Classify reads the role of every input of a model from its name and
// declared shape; outputs are the model's outputs, where it looks for the
// present output of each cache and state.
func Classify(inputs, outputs []Input) *Plan {
	outs := map[string]string{}
	outInfo := map[string]Input{}
	for _, o := range outputs {
		outs[normalize(o.Name)] = o.Name
		outInfo[o.Name] = o
	}
	p := &Plan{byName: map[string]int{}}
	for _, in := range inputs {
		s := classify(in, outs)
		s.sizes = make([]int64, len(in.Shape))
		copy(s.sizes, in.Shape)
		if o, ok := outInfo[s.Present]; ok && len(o.Shape) == len(in.Shape) {
			for i, d := range s.sizes {
				if d < 0 && i != s.BatchAxis && i != s.LengthAxis && o.Shape[i] >= 0 {
					s.sizes[i] = o.Shape[i]
				}
			}
		}
		p.byName[in.Name] = len(p.slots)
		p.slots = append(p.slots, s)
	}
	return p
}

// classify returns the slot of one input.
func classify(in Input, outs map[string]string) Slot {
	s := Slot{Input: in, Layer: -1, BatchAxis: -1, LengthAxis: -1}
	n := normalize(in.Name)
	if r := plainRole(in.Name); r != Unknown {
		s.Role = r
		if len(in.Shape) == 2 || in.Shape == nil {
			s.BatchAxis, s.LengthAxis = 0, 1
		}
		return s
	}
	if !isPast(n) || !in.DType.IsFloat() {
		return s
	}
	if m := firstNumber.FindString(n); m != "" {
		s.Layer, _ = strconv.Atoi(m)
	}
	s.BatchAxis, s.LengthAxis = cacheAxes(in, n)
	switch {
	case isCross(n):
		s.Role = CrossCache
	case s.LengthAxis >= 0:
		s.Role = Cache
	default:
		s.Role = State
	}
	s.Present = findPresent(in.Name, outs)
	return s
}

// Slots returns every slot, in the model's input order.
func (p *Plan) Slots() []Slot { return append([]Slot(nil), p.slots...) }

// Lookup returns the slot of the input called name.
func (p *Plan) Lookup(name string) (Slot, bool) {
	i, ok := p.byName[name]
	if !ok {
		return Slot{}, false
	}
	return p.slots[i], true
}

// ByRole returns the slots of a role, in the model's order.
func (p *Plan) ByRole(r Role) []Slot {
	var out []Slot
	for _, s := range p.slots {
		if s.Role == r {
			out = append(out, s)
		}
	}
	return out
}

// First returns the first slot of a role.
func (p *Plan) First(r Role) (Slot, bool) {
	for _, s := range p.slots {
		if s.Role == r {
			return s, true
		}
	}
	return Slot{}, false
}

// Carried returns the caches and states, in the model's order: the
// inputs that a run returns the next value of.
func (p *Plan) Carried() []Slot {
	var out []Slot
	for _, s := range p.slots {
		if s.Role.Carried() {
			out = append(out, s)
		}
	}
	return out
}

// ForField returns the slot that a data field of that name feeds: the
// input of the same name (also without regard to case or a ":0" suffix),
// else, for a field with a role's canonical name (attention_mask,
// token_type_ids, position_ids), the one input of that role.
func (p *Plan) ForField(field string) (Slot, bool) {
	if s, ok := p.Lookup(field); ok {
		return s, true
	}
	n := normalize(field)
	for _, s := range p.slots {
		if normalize(s.Name) == n {
			return s, true
		}
	}
	for _, r := range []Role{TokenIDs, AttentionMask, TokenTypes, Positions} {
		if r.CanonicalName() == n {
			if slots := p.ByRole(r); len(slots) == 1 {
				return slots[0], true
			}
		}
	}
	return Slot{}, false
}
