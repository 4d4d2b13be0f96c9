// Package pydict is Python's dict with string keys: a map that keeps its
// keys in insertion order. It is the one such type of the module: the
// dicts that package pickle decodes and encodes, and the dicts that the
// chat templates of serve/openai render, are Dicts.
package pydict
