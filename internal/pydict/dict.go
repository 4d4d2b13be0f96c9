package pydict

import "iter"

// Dict maps string keys to values, in insertion order. The zero value is
// an empty dict, ready to use.
type Dict struct {
	keys   []string
	values map[string]any
}

// Set sets key to v. A new key goes last; an existing key keeps its place,
// as in Python.
func (d *Dict) Set(key string, v any) {
	if _, ok := d.values[key]; !ok {
		if d.values == nil {
			d.values = map[string]any{}
		}
		d.keys = append(d.keys, key)
	}
	d.values[key] = v
}

// Get returns the value of key and whether it is present.
func (d *Dict) Get(key string) (any, bool) {
	v, ok := d.values[key]
	return v, ok
}

// Keys returns the keys in insertion order, in a new slice.
func (d *Dict) Keys() []string {
	return append([]string(nil), d.keys...)
}

// Len returns the number of keys.
func (d *Dict) Len() int { return len(d.keys) }

// All yields the keys and their values in insertion order. The dict must
// not change while it runs.
func (d *Dict) All() iter.Seq2[string, any] {
	return func(yield func(string, any) bool) {
		for _, k := range d.keys {
			if !yield(k, d.values[k]) {
				return
			}
		}
	}
}
