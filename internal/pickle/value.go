package pickle

import "github.com/peftonnx/peftonnx/internal/pydict"

// The values Decode returns and Encode takes:
//
//	Python          Go
//	None            nil
//	bool            bool
//	int             int64 (Encode takes int too)
//	float           float64
//	str             string
//	bytes           []byte
//	tuple           *Tuple
//	list            *List
//	dict            *Dict (str keys only; also collections.OrderedDict)
//	numpy.ndarray   *npy.Array
//
// Decode may return values that share memory: a value the pickle refers to
// twice (through its memo) is the same Go value in both places.

// Dict is a Python dict with str keys, in insertion order: a pydict.Dict,
// whose Set, Get, Keys, Len and All it has.
type Dict struct {
	pydict.Dict
	node
}

// NewDict returns an empty dict.
func NewDict() *Dict { return &Dict{} }

// List is a Python list.
type List struct {
	Items []any
	node
}

// NewList returns a list of items.
func NewList(items ...any) *List { return &List{Items: items} }

// Tuple is a Python tuple.
type Tuple struct {
	Items []any
	node
}

// NewTuple returns a tuple of items.
func NewTuple(items ...any) *Tuple { return &Tuple{Items: items} }

// node is what the decoder tracks for each container it builds, so that
// hostile input can neither nest without bound, nor make a value refer to
// itself, nor make a small file expand into a large tree by repeating
// references to one big value.
type node struct {
	depth  int   // containers below and including this one
	cost   int64 // size of the tree under this value, references expanded
	sealed bool  // placed inside another container: no more items
	inner  bool  // holds a decoder-internal object (tuples only)
}
